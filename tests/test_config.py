"""Config loading, command-line overrides and their rejection, before any compute."""

import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from jaxclf import config as config_lib

from conftest import REPO

CONFIG = os.path.join(REPO, "configs", "lenet5_digits.py")


def parse(*args, config=CONFIG):
    """Parses a command line as jaxclf.main does (config_flags reads overrides from sys.argv)."""
    argv = ["prog", f"--config={config}", *args]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True)
    saved, sys.argv = sys.argv, argv
    try:
        fv(argv)
    finally:
        sys.argv = saved
    return fv.config


def test_override_applies():
    c = parse("--config.optim.lr=0.1", "--config.train.num_steps=7", "--config.model.name=mlp")
    assert (c.optim.lr, c.train.num_steps, c.model.name) == (0.1, 7, "mlp")
    config_lib.validate(c)


def test_variant_argument():
    assert parse().train.num_steps == 1000
    assert parse(config=f"{CONFIG}:smoke").train.num_steps == 6


def test_unknown_key_is_rejected_with_suggestion():
    with pytest.raises(Exception, match=r"(?s)lrr.*Did you mean.*lr"):
        parse("--config.optim.lrr=0.1")


def test_wrong_type_is_rejected():
    with pytest.raises(Exception, match="batch_size"):
        parse("--config.train.batch_size=big")


@pytest.mark.parametrize(
    "key, value, valid",
    [
        ("model.name", "lenet7", "lenet5"),
        ("optim.name", "adamm", "adamw"),
        ("optim.schedule", "cosin", "cosine"),
        ("task", "regression", "multiclass"),
        ("metrics", ("accuracy", "acuracy"), "accuracy"),
        ("dataset.normalize", "zscore", "standardize"),
        ("dataset.augment", ("mixup",), "random_crop"),
    ],
)
def test_unknown_names_list_valid_choices(key, value, valid):
    c = config_lib.load(CONFIG)
    section, _, leaf = key.rpartition(".")
    (c[section] if section else c)[leaf] = value
    with pytest.raises(ValueError, match=valid):
        config_lib.validate(c)


def test_unknown_dataset_names_bundled_ones():
    c = config_lib.load(CONFIG)
    c.dataset.name = "digitz"
    with pytest.raises(ValueError, match="unknown dataset 'digitz'.*digits"):
        config_lib.validate(c)


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="smoke"):
        config_lib.load(CONFIG, "smok")


def test_cli_rejects_bad_model_before_compute(tmp_path):
    """The real command line: exits non-zero, names the valid models, writes nothing."""
    workdir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "jaxclf.main", f"--config={CONFIG}", f"--workdir={workdir}", "--config.model.name=lenet7"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode != 0
    assert "unknown model 'lenet7'" in proc.stderr and "lenet5" in proc.stderr
    assert not workdir.exists()


def test_model_settings_are_checked_before_any_compute():
    """An unknown model keyword or cell option stops validation, naming what is valid."""
    c = parse(config=os.path.join(REPO, "configs", "gradients_first_symbol.py") + ":lstm,100,fb3")
    assert c.model.cell_options.to_dict() == {"forget_bias": 3.0}
    config_lib.validate(c)
    c.model.cell_options.forget_bias = 5.0  # and --config.model.cell_options.forget_bias=5
    config_lib.validate(c)
    with c.unlocked():
        c.model.cell_options = {"forgetbias": 3.0}
    with pytest.raises(ValueError, match="cell 'lstm' has no option 'forgetbias'; its options: recurrent_scale, forget_bias"):
        config_lib.validate(c)
    c = parse(config=os.path.join(REPO, "configs", "gradients_first_symbol.py") + ":gru,200,ub-3,rs0.5")
    assert c.model.cell_options.to_dict() == {"update_bias": -3.0, "recurrent_scale": 0.5}
    config_lib.validate(c)
    c = parse(config=os.path.join(REPO, "configs", "gradients_first_symbol.py") + ":rnn,100,ub-3")
    with pytest.raises(ValueError, match="cell 'rnn' has no option 'update_bias'; its options: recurrent_scale, activation"):
        config_lib.validate(c)
    with pytest.raises(ValueError, match="unknown variant 'fbnan'.*ubN, rsS"):
        config_lib.load(os.path.join(REPO, "configs", "gradients_first_symbol.py"), "lstm,fbnan")
    c = parse()
    with c.unlocked():
        c.model.widht = 3
    with pytest.raises(TypeError, match="model 'lenet5'.*widht"):
        config_lib.validate(c)
