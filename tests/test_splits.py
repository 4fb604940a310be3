"""The validation split carved from train: stratified, seeded, disjoint, before preprocessing."""

import numpy as np
import pytest

from jaxclf import data
from jaxclf.data import splits


def test_holdout_is_stratified_disjoint_and_deterministic():
    labels = np.repeat(np.arange(4), [50, 30, 7, 1])
    kept, held = splits.stratified_holdout(labels, 0.2, seed=3)
    assert np.intersect1d(kept, held).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(labels.size))
    # round(0.2 * 88) = 18 held out: 10, 6 and 1.4 -> 2 (largest remainder) of the classes' quotas;
    # a one-example class keeps its example
    np.testing.assert_array_equal(np.bincount(labels[held], minlength=4), [10, 6, 2, 0])
    again = splits.stratified_holdout(labels, 0.2, seed=3)
    np.testing.assert_array_equal(held, again[1])
    assert not np.array_equal(held, splits.stratified_holdout(labels, 0.2, seed=4)[1])
    with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 1\)"):
        splits.stratified_holdout(labels, 1.0, seed=0)


def test_carve_takes_every_feature_at_the_same_indices():
    raw = {"train": {"image": np.arange(20.0)[:, None], "label": np.arange(20) % 2, "text": [f"t{i}" for i in range(20)]},
           "test": {"image": np.zeros((3, 1)), "label": np.zeros(3, int), "text": ["a", "b", "c"]}}
    out = splits.carve_validation(raw, "train", "label", 0.3, seed=0)
    for part in ("train", "validation"):
        ids = out[part]["image"][:, 0].astype(int)
        np.testing.assert_array_equal(out[part]["label"], ids % 2)
        assert out[part]["text"] == [f"t{i}" for i in ids]
    assert len(out["validation"]["label"]) == 6 and out["test"] is raw["test"]


def test_load_measures_normalisation_on_the_carved_train_split_only(smoke_config):
    cfg = smoke_config.dataset
    assert cfg.validation_fraction > 0 and cfg.eval_splits == ("validation",) and cfg.test_splits == ("test",)
    ds = data.load(cfg)
    train, val, test = (ds.splits[s] for s in ("train", "validation", "test"))
    assert train.num_examples + val.num_examples == 1347 and test.num_examples == 450
    np.testing.assert_allclose(train.inputs.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)  # stats of these examples
    assert abs(float(val.inputs.mean())) > 1e-4  # ... and not of the validation ones
    assert val.num_examples == 135  # round(0.1 * 1347), each class its quota rounded down or up
    quotas = 0.1 * np.bincount(np.concatenate([train.labels, val.labels]))
    assert np.all(np.abs(np.bincount(val.labels, minlength=10) - quotas) < 1)
