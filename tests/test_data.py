"""The offline digits builder, the catalog path (mock data), split slices, data-access errors,
and the index pipeline."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from jaxclf import data
from jaxclf.data import sources
from jaxclf.data.builders import digits


def test_digits_builder_matches_sklearn(smoke_config):
    ds = data.load(smoke_config.dataset)
    assert ds.num_classes == 10
    # the smoke config holds 10% of train out as its validation split (jaxclf.data.splits)
    assert {k: v.num_examples for k, v in ds.splits.items()} == {"train": 1212, "validation": 135, "test": 450}
    assert ds.input_shape == (32, 32, 1)
    expected = load_digits().target[digits.split_indices()["test"]]
    assert sorted(ds.splits["test"].labels.tolist()) == sorted(expected.tolist())
    assert set(np.bincount(ds.splits["test"].labels).tolist()) <= {43, 44, 45, 46}  # stratified
    # standardised with train-split statistics
    train = ds.splits["train"].inputs
    assert abs(train.mean()) < 1e-4 and abs(train.std() - 1) < 1e-3


def test_split_is_fixed_and_disjoint():
    a, b = digits.split_indices(), digits.split_indices()
    np.testing.assert_array_equal(a["test"], b["test"])
    assert not set(a["train"]) & set(a["test"])
    assert len(a["train"]) + len(a["test"]) == 1797


def test_catalog_dataset_through_same_path(smoke_config):
    """--config.dataset.name=mnist works unchanged; served by tfds.testing.mock_data."""
    cfg = smoke_config.dataset
    cfg.name, cfg.pad, cfg.resize = "mnist", 2, None
    with tfds.testing.mock_data(num_examples=24):
        ds = data.load(cfg)
    assert ds.num_classes == 10
    assert ds.input_shape == (32, 32, 1)
    assert ds.splits["train"].num_examples + ds.splits["validation"].num_examples == 24


def test_digits_pixels_are_sklearns(smoke_config):
    """The prepared ArrayRecord files hold sklearn's images, 0..16 rescaled to 0..255 uint8."""
    builder = sources.prepared_builder(smoke_config.dataset)
    raw = sources.read_split(builder, "test")
    bunch, idx = load_digits(), digits.split_indices()["test"]
    assert raw["image"].dtype == np.uint8 and raw["image"].shape == (450, 8, 8, 1)
    order = np.lexsort(raw["image"].reshape(450, -1).T)  # the prepared order is TFDS's, not idx's
    expected = np.round(bunch.images[idx] * 255 / 16).astype(np.uint8)[..., None]
    np.testing.assert_array_equal(raw["image"][order], expected[np.lexsort(expected.reshape(450, -1).T)])
    assert sorted(raw["label"].tolist()) == sorted(bunch.target[idx].tolist())


def test_split_slices_partition_the_split(smoke_config):
    """'train[:80%]' and 'train[80%:]' (TFDS's slice syntax, e.g. a threshold split) are a
    prefix and the rest of 'train'. Catalog datasets read through the same TFDS data source
    (tfds.testing.mock_data ignores slices, so it cannot show this)."""
    builder = sources.prepared_builder(smoke_config.dataset)
    whole, head, tail = (sources.read_split(builder, s) for s in ("train", "train[:80%]", "train[80%:]"))
    n = len(whole["label"])
    assert len(head["label"]) == round(0.8 * n) and len(head["label"]) + len(tail["label"]) == n
    for key in whole:
        np.testing.assert_array_equal(np.concatenate([head[key], tail[key]]), whole[key])


def test_unknown_split_names_the_splits(smoke_config):
    smoke_config.dataset.eval_splits = ("valid",)
    with pytest.raises(ValueError, match=r"dataset 'digits' has no split 'valid' .*its splits: (train, test|test, train)"):
        data.load(smoke_config.dataset)


def test_unknown_dataset_is_one_short_line_with_a_suggestion(monkeypatch):
    with pytest.raises(ValueError) as e:
        data.check_exists("digitz")
    message = str(e.value)
    assert "\n" not in message and len(message) < 300, message
    assert "did you mean 'digits'?" in message
    assert all(name in message for name in data.builders.BUILDERS) and "sklearn" not in message
    with pytest.raises(ValueError, match=r"unknown dataset 'zzzzzz': bundled datasets: digits"):
        data.check_exists("zzzzzz")
    data.check_exists("mnist")  # the TFDS catalog
    data.check_exists("first_symbol/t100")
    monkeypatch.setattr(sources, "_tensorflow_installed", lambda: False)  # TFDS then lists fewer builders
    with pytest.raises(ValueError, match=r"catalog builders that import it, e.g. glue: pip install 'jaxclf\[prepare\]'\)$"):
        data.check_exists("zzzzzz")


def test_unknown_config_or_version_is_one_line(smoke_config):
    cfg = smoke_config.dataset
    cfg.name = "first_symbol/t7"
    with pytest.raises(ValueError, match=r"^dataset 'first_symbol/t7': no such config; configs: t10, t25, .*t200_n40000$"):
        data.load(cfg)
    cfg.name = "digits:9.9.9"
    with pytest.raises(ValueError, match=rf"^dataset .digits:9.9.9.: Dataset digits cannot be loaded at version 9.9.9, only: {digits.Digits.VERSION}.$"):
        data.load(cfg)


@pytest.fixture
def no_network(monkeypatch):
    """Every HTTP(S) request goes to a closed local port: refused at once, as without network."""
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)


def test_unprepared_catalog_dataset_fails_fast(smoke_config, tmp_path, no_network, monkeypatch):
    """Not prepared and not downloadable: a FileNotFoundError in seconds (TFDS alone retries for
    about 3.5 minutes) saying where it looked and the command that prepares it."""
    cfg = smoke_config.dataset
    cfg.name, cfg.data_dir = "cifar100", str(tmp_path)
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as e:
        data.load(cfg)
    assert time.monotonic() - start < 20
    message = str(e.value)
    assert "\n" not in message
    assert f"not prepared in {tmp_path}/cifar100/" in message and "could not be downloaded" in message
    assert f"tfds build cifar100 --data_dir={tmp_path} --file_format=array_record" in message

    cfg.download = False
    with pytest.raises(FileNotFoundError, match=r"not prepared in .*\(dataset.download=False\); prepare it with tfds build"):
        data.load(cfg)

    cfg.download = True  # without TensorFlow: no download is tried, the message names the extra
    monkeypatch.setattr(sources, "_tensorflow_installed", lambda: False)
    with pytest.raises(FileNotFoundError, match=r"needs TensorFlow, which is not installed: pip install 'jaxclf\[prepare\]'"):
        data.load(cfg)


def test_missing_feature_names_the_features(smoke_config):
    cfg = smoke_config.dataset
    cfg.image_key = "img"
    with pytest.raises(ValueError, match="no feature 'img'.*image, label"):
        data.load(cfg)


def test_train_indices_are_a_pure_function_of_seed_and_step():
    n, b = 50, 8
    a = [data.train_indices(3, s, b, n) for s in range(40)]
    data.input_pipeline._epoch_permutation.cache_clear()
    c = [data.train_indices(3, s, b, n) for s in range(39, -1, -1)][::-1]
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(c))
    assert not np.array_equal(np.concatenate(a), np.concatenate([data.train_indices(4, s, b, n) for s in range(40)]))


def test_each_epoch_visits_every_example_once():
    n, b = 50, 8
    stream = np.concatenate([data.train_indices(0, s, b, n) for s in range(50)])  # 400 = 8 epochs
    for epoch in range(8):
        assert sorted(stream[epoch * n : (epoch + 1) * n].tolist()) == list(range(n))
    assert not np.array_equal(stream[:n], stream[n : 2 * n])  # reshuffled per epoch


@pytest.mark.parametrize("n,b,ranges", [
    (50, 8, [(s, s + 1) for s in range(60)]),  # one step per chunk: a new table once per epoch
    (50, 8, [(0, 7), (7, 20), (20, 21), (21, 40)]),  # chunks of several steps, across epochs
    (5, 8, [(0, 3), (3, 4), (4, 9)]),  # batches larger than the dataset: 2-3 epochs per step
    (60, 4, [(1000, 1003), (1003, 1004)]),  # a resumed run's late steps
])
def test_table_indices_on_device_equal_train_indices(n, b, ranges):
    tables = list(data.index_tables(7, ranges, b, n))
    for (start, stop), table in zip(ranges, tables):
        device = jax.tree.map(jnp.asarray, table)
        got = jax.jit(lambda t, s: data.table_indices(t, s, b, n))
        for step in range(start, stop):
            np.testing.assert_array_equal(got(device, jnp.int32(step)), data.train_indices(7, step, b, n))
    if len(ranges) == 60:  # reused while it covers the chunk: at most one per epoch (480 examples, 10 epochs)
        assert len({id(t) for t in tables}) <= 10
    assert list(data.index_tables(7, [], b, n)) == []  # a finished run has no steps left


def test_eval_batches_cover_every_example_exactly_once():
    batches = list(data.eval_batches(10, 4))
    assert len(batches) == 3
    idx = np.concatenate([i for i, _ in batches])
    mask = np.concatenate([m for _, m in batches])
    assert sorted(idx[mask == 1].tolist()) == list(range(10))
    assert mask.tolist() == [1] * 10 + [0] * 2


@pytest.mark.slow
def test_main_command_data_errors_are_short_and_fast(tmp_path):
    """The main command with a misspelt dataset, and with a catalog dataset that is neither
    prepared nor downloadable: the message, without TFDS's catalogue, within seconds."""
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": ""}

    def main(*overrides):
        command = [sys.executable, "-m", "jaxclf.main", "--config=configs/lenet5_digits.py:smoke",
                   f"--workdir={tmp_path / 'run'}", f"--config.dataset.data_dir={tmp_path / 'tfds'}", *overrides]
        start = time.monotonic()
        out = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        return out, time.monotonic() - start

    out, _ = main("--config.dataset.name=digitz")
    assert out.returncode != 0
    assert "unknown dataset 'digitz': did you mean 'digits'? bundled datasets: digits, mnist1d" in out.stderr
    assert "abstract_reasoning" not in out.stderr and "sklearn" not in out.stderr
    out, seconds = main("--config.dataset.name=cifar100", "--config.dataset.pad=0")
    assert out.returncode != 0
    assert f"dataset 'cifar100' is not prepared in {tmp_path / 'tfds'}/cifar100/" in out.stderr, out.stderr[-2000:]
    assert "tfds build cifar100" in out.stderr
    assert seconds < 60  # starting Python and JAX included; TFDS's own retries took 210 s
