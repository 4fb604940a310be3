"""Config loading, command-line overrides and their rejection, before any compute."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags
from ml_collections import config_flags

from jaxclf import cli
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


def leaves(tree, prefix=""):
    """Dotted keys of every value in a nested dict."""
    out = []
    for key, value in tree.items():
        out += leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return out


def test_every_default_key_is_documented_and_printed():
    c = config_lib.base_config()
    docs = config_lib.docs()
    keys = leaves(c.to_dict())
    sections = {k.rsplit(".", i)[0] for k in keys for i in range(1, k.count(".") + 1)} | {"loss"}
    assert not [k for k in keys if not docs.get(k)] and set(docs) == set(keys) | sections
    assert {"decision", "dataset.text", "dataset.stream", "dataset.image_folder", "dataset.strokes"} <= sections
    printed = config_lib.describe(c).splitlines()
    for key in keys:
        node = c
        for part in key.split("."):
            node = node[part]
        assert f"{key} = {node!r}  # {docs[key]}" in printed
    assert f"# decision: {docs['decision']}" in printed  # sections are headed by their doc


@pytest.mark.parametrize("old, new", [
    ("train.threshold", "decision.threshold"), ("train.threshold_rule", "decision.rule"),
    ("train.threshold_split", "decision.split"), ("dataset.vocab_size", "dataset.text.vocab_size"),
    ("dataset.eval_resize", "dataset.stream.eval_resize"), ("dataset.split_ratio", "dataset.image_folder.split_ratio"),
    ("dataset.stroke_drop", "dataset.strokes.stroke_drop"),
])
def test_old_keys_are_unknown(old, new):
    c = config_lib.base_config()
    node = c
    for part in new.split(".")[:-1]:
        node = node[part]
    assert new.rsplit(".", 1)[1] in node
    with pytest.raises(AttributeError) as raised:
        parse(f"--config.{old}=1")
    line = cli.config_flag_message(raised.value, ["prog", f"--config.{old}=1"])  # what the command line prints
    assert line.startswith(f"--config.{old}: unknown config key '{old.rsplit('.', 1)[1]}'")


def bad(section: str, key: str, value):
    """The default config with ``section.key = value`` (section may be nested: 'dataset.stream')."""
    c = config_lib.base_config()
    node = c
    for part in section.split("."):
        node = node[part]
    node[key] = value
    return c


def test_each_package_validates_its_own_section():
    """Each package's check raises the named error on its own section, as config.validate does."""
    from jaxclf import transfer
    from jaxclf.data import config as data_config
    from jaxclf.metrics import config as metrics_config
    from jaxclf.models import config as models_config
    from jaxclf.train import config as train_config

    cases = [
        (lambda c: data_config.validate(c.dataset), bad("dataset", "normalize", "zscore"),
         "unknown dataset.normalize 'zscore'; valid: standardize"),
        (lambda c: data_config.validate(c.dataset), bad("dataset.stream", "eval_resize", 8),
         r"dataset.stream.eval_resize applies to streaming only"),
        (lambda c: data_config.validate(c.dataset), bad("dataset.image_folder", "on_bad_file", "ignore"),
         "dataset.image_folder.on_bad_file must be 'skip' or 'error', got 'ignore'"),
        (lambda c: models_config.validate(c.model), bad("model", "name", "lenet7"),
         "unknown model 'lenet7'; valid models: .*lenet5"),
        (lambda c: train_config.validate_optim(c.optim, allow_unusual=False), bad("optim", "lr", -1.0),
         r"optim.lr=-1.0 is negative \(gradient ascent\)"),
        (lambda c: train_config.validate(c.train), bad("train", "eval_every", 0), "train.eval_every must be positive, got 0"),
        (lambda c: metrics_config.validate_decision(c.decision, c.dataset.eval_splits), bad("decision", "rule", "best_acc"),
         "unknown decision.rule 'best_acc'; valid: fixed, best_f1, best_youden"),
        (lambda c: metrics_config.validate_decision(c.decision, c.dataset.eval_splits), bad("decision", "split", "validation"),
         r"decision.split 'validation' is not one of dataset.eval_splits \('test',\)"),
        (lambda c: transfer.validate(c.transfer), bad("transfer", "freeze", "head("),
         r"transfer.freeze='head\(' is not a regular expression"),
    ]
    for check, c, message in cases:
        with pytest.raises(ValueError, match=message):
            check(c)
        with pytest.raises(ValueError, match=message):
            config_lib.validate(c)
    config_lib.validate(config_lib.base_config())
    train_config.validate_optim(bad("optim", "lr", -1.0).optim, allow_unusual=True)


def test_section_modules_do_not_import_the_assembler_or_the_loop():
    """Arrows go one way: jaxclf.config imports the packages' sections, never the reverse."""
    import ast

    modules = ["jaxclf/schema.py", "jaxclf/data/config.py", "jaxclf/models/config.py", "jaxclf/metrics/config.py",
               "jaxclf/train/config.py", "jaxclf/transfer.py", "jaxclf/train/workdir.py"]
    for path in modules:
        imported = set()
        for node in ast.walk(ast.parse(Path(REPO, path).read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        assert not imported & {"jaxclf.config", "jaxclf.train.loop"}, path


def test_print_config_needs_no_workdir(tmp_path):
    """--print_config prints the config file with its overrides, each key with its doc, and
    exits 0 without a workdir; training without one names the missing flag."""
    main = [sys.executable, "-m", "jaxclf.main", f"--config={CONFIG}"]
    proc = subprocess.run([*main, "--config.optim.lr=0.25", "--print_config"], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    docs = config_lib.docs()
    assert f"optim.lr = 0.25  # {docs['optim.lr']}" in lines
    assert f"decision.threshold = 0.5  # {docs['decision.threshold']}" in lines
    assert len([line for line in lines if " = " in line]) == len(leaves(config_lib.load(CONFIG).to_dict()))
    assert not list(tmp_path.iterdir())
    proc = subprocess.run(main[:3], capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": REPO},
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: --config and --workdir are required to train (--print_config needs neither)"
