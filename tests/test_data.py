"""The offline digits builder, the catalog path (mock data), and the index pipeline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from jaxclf import data
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
