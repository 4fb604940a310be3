"""A validation split carved from the train split, so that choices made while training (when
to stop, which learning rate) never look at the test split.

The carving is stratified (each class gives the same fraction), seeded and deterministic,
and runs on the raw arrays before anything is measured on the train split (normalisation
statistics, a text vocabulary, stroke scales), so nothing of the validation examples leaks
into preprocessing.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

VALIDATION = "validation"  # the carved split's name (in dataset.eval_splits, results.json)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) example indices, both sorted. ``round(fraction * n)`` examples are
    held out, shared among the classes in proportion to their sizes (largest remainders get
    the rounding; a class keeps at least one example), each class's chosen by a permutation
    seeded by ``seed`` and the class."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"dataset.validation_fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = fraction * counts
    take = np.floor(quotas).astype(int)
    extra = int(round(fraction * labels.size)) - take.sum()
    for i in np.argsort(-(quotas - take), kind="stable")[:max(extra, 0)]:
        take[i] += 1
    take = np.minimum(take, counts - 1)
    held = [np.random.default_rng([seed, int(c)]).permutation(np.flatnonzero(labels == c))[:k]
            for c, k in zip(classes, take)]
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(labels.size), held_out), held_out


def _take(values, indices: np.ndarray):
    if isinstance(values, np.ndarray):
        return values[indices]
    return [values[i] for i in indices]


def carve_validation(raw: dict, train_split: str, label_key: str, fraction: float, seed: int) -> dict:
    """``raw`` ({split: {feature: array}}) with ``train_split`` divided into the rest of itself
    and :data:`VALIDATION` (every feature taken at the same indices)."""
    train = raw[train_split]
    kept, held_out = stratified_holdout(train[label_key], fraction, seed)
    return {**raw, train_split: {k: _take(v, kept) for k, v in train.items()},
            VALIDATION: {k: _take(v, held_out) for k, v in train.items()}}


def read_with_validation(read: Callable, cfg, names: Sequence[str]):
    """``read(cfg, names)`` -> (raw splits, ...), also reading ``cfg.test_splits`` (evaluated
    once, at the end of training) and, when ``cfg.validation_fraction`` > 0, carving
    :data:`VALIDATION` out of ``cfg.train_split`` instead of reading it."""
    carve = cfg.validation_fraction > 0
    wanted = tuple(dict.fromkeys((*names, *cfg.test_splits)))
    raw, *rest = read(cfg, tuple(n for n in wanted if not (carve and n == VALIDATION)))
    if carve:
        raw = carve_validation(raw, cfg.train_split, cfg.label_key, cfg.validation_fraction, cfg.validation_seed)
    return (raw, *rest)
