"""The input pipeline: dataset splits (``jaxclf.data.sources``: TFDS ArrayRecord files read by
index, no TensorFlow), preprocessed once, held in memory, batched by index.

Why by index: the examples of step ``s`` are a pure function of ``(seed, s)`` (a fixed
permutation per epoch), so a resumed run sees exactly the batches an uninterrupted one
would, and every process of a multi-host job computes the same global batch without
talking to the others. The arrays live on the devices; the jitted step gathers its batch
from them at indices it computes itself (``index_tables``/``table_indices``), so neither
images nor per-step indices cross from host to device after start-up.

Evaluation visits every example exactly once: the last batch is padded with copies of
example 0 and a 0/1 mask marks the padding, which the metrics ignore.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from jaxclf.data import sources, strokes
from jaxclf.data.dataset import Dataset, Split
from jaxclf.ops.strokes import stroke5_length
from jaxclf.data.splits import read_with_validation

NORMALIZATIONS = ("standardize", "unit", "none")
PREPROCESSING_FILE = "preprocessing.json"  # in the workdir: see preprocessing_record
AUGMENTATIONS = ("random_crop", "flip", "stroke_scale", "stroke_drop")


def preprocessing_record(*, input_shape, pad: int, mean, std, class_names: Sequence[str], **extra) -> dict:
    """What a run stores in ``preprocessing.json``: everything prediction needs from the data
    (``extra``: e.g. a text vocabulary or the stroke scale)."""
    return {
        "input_shape": [int(d) for d in input_shape],  # (H, W, C) the model takes
        "pad": int(pad),
        "mean": [] if mean is None else [float(m) for m in np.ravel(mean)],
        "std": [] if std is None else [float(s) for s in np.ravel(std)],
        "class_names": [str(n) for n in class_names],
        **extra,
    }


def dataset_record(ds: "Dataset", pad: int) -> dict:
    """``preprocessing_record`` of a loaded dataset."""
    return preprocessing_record(input_shape=ds.input_shape, pad=pad, mean=ds.mean, std=ds.std,
                                class_names=ds.class_names, **ds.preprocessing)


def _resize(images: np.ndarray, size) -> np.ndarray:
    if size is None or tuple(images.shape[1:3]) == tuple(size):
        return images
    shape = (images.shape[0], *size, images.shape[-1])
    return np.asarray(jax.image.resize(jnp.asarray(images), shape, method="bilinear"))


def _pad(images: np.ndarray, pad: int) -> np.ndarray:
    if not pad:
        return images
    return np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def _as_float_images(images: np.ndarray) -> np.ndarray:
    """uint8 images to float32 in [0, 1]; other inputs (e.g. sequences) to float32 as is."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def _normalization_stats(cfg, train_inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean, std): explicit in the config, else measured on the train split."""
    if cfg.normalize not in NORMALIZATIONS:
        raise ValueError(
            f"unknown dataset.normalize {cfg.normalize!r}; valid: {', '.join(NORMALIZATIONS)}"
        )
    channels = train_inputs.shape[-1]
    if cfg.normalize == "none":
        return np.zeros(channels, np.float32), np.ones(channels, np.float32)
    if cfg.normalize == "unit":
        return np.full(channels, 0.5, np.float32), np.full(channels, 0.5, np.float32)
    if cfg.get("mean") is not None and cfg.get("std") is not None:
        return np.asarray(cfg.mean, np.float32), np.asarray(cfg.std, np.float32)
    axes = tuple(range(train_inputs.ndim - 1))
    mean = train_inputs.mean(axis=axes, dtype=np.float64)
    std = train_inputs.std(axis=axes, dtype=np.float64)
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


FEATURE_KINDS = ("dense", "text", "strokes")


def _feature_kind(feature) -> str:
    """How an input feature is preprocessed: 'text' (strings -> token ids), 'strokes'
    (variable-length stroke-3 sketches -> padded stroke-5), else 'dense' (images, vectors,
    fixed-length sequences)."""
    if isinstance(feature, tfds.features.Text):
        return "text"
    shape = getattr(feature, "shape", ())
    if len(shape) == 2 and shape[0] is None and shape[1] == 3:
        return "strokes"
    return "dense"


def _read(cfg, names) -> tuple[dict, int, tuple[str, ...], str]:
    """(raw splits {split: {feature: array}}, num_classes, class names, feature kind)."""
    if cfg.name == "image_folder":
        from jaxclf.data import image_folder

        raw, class_names = image_folder.read_splits(cfg)
        missing = [s for s in names if s not in raw]
        if missing:
            raise ValueError(f"image folder {cfg.data_dir} has no split {missing}; it has {sorted(raw)}")
        return {s: raw[s] for s in names}, len(class_names), tuple(class_names), "dense"
    builder = sources.prepared_builder(cfg)
    features = builder.info.features
    for key in (cfg.image_key, cfg.label_key):
        if key not in features:
            raise ValueError(
                f"dataset {cfg.name!r} has no feature {key!r}; "
                f"features: {', '.join(sorted(features))} (set dataset.image_key/label_key)"
            )
    kind = _feature_kind(features[cfg.image_key])
    label = features[cfg.label_key]
    label = getattr(label, "feature", label)  # per-step labels: a Sequence of class labels
    class_names = tuple(getattr(label, "names", None) or ())
    return {split: sources.read_split(builder, split) for split in names}, label.num_classes, class_names, kind


def _prepare_dense(cfg, arrays: dict) -> Split:
    inputs = _as_float_images(arrays[cfg.image_key])
    if inputs.ndim == 4:
        inputs = _resize(_pad(inputs, cfg.pad), cfg.resize)
        if cfg.sequence_view == "rows":  # each image row is one time step
            inputs = inputs.reshape(inputs.shape[0], inputs.shape[1], -1)
    return Split(inputs, arrays[cfg.label_key].astype(np.int32))


def _prepare_strokes(cfg, raw: dict, class_names) -> tuple[dict[str, Split], dict]:
    """Stroke-3 sketches -> stroke-5 padded to ``dataset.max_length`` points (longer ones are
    dropped), offsets divided by the train split's standard deviation."""
    built = strokes.build(
        {s: (list(a[cfg.image_key]), a[cfg.label_key]) for s, a in raw.items()},
        class_names, cfg.max_length, train_split=cfg.train_split,
    )
    splits = {s: Split(x.strokes, x.labels, x.lengths) for s, x in built.splits.items()}
    return splits, {"stroke_scale": float(built.scale), "max_length": cfg.max_length}


def load(cfg) -> Dataset:
    """Loads the configured splits, preprocessed by the input feature's kind.

    ``cfg`` is the config's ``dataset`` section. Dense inputs (images, vectors, sequences):
    to float, ``pad``, ``resize``, ``normalize`` (+ optional ``mean``/``std``),
    ``sequence_view`` ('rows': images become sequences of rows, for recurrent models). Text
    (``jaxclf.data.text``): tokenised with a train-split vocabulary of ``text.vocab_size``,
    ``max_length`` tokens, with lengths. Stroke-3 sketches: stroke-5 of ``max_length``
    points, with lengths. For every kind: ``keep_classes`` (a subset of classes, relabelled
    in that order), ``examples_per_class`` / ``budget_seed`` (a label budget for the train
    split).
    """
    names = tuple(dict.fromkeys((cfg.train_split, *cfg.eval_splits)))
    raw, num_classes, class_names, kind = read_with_validation(_read, cfg, names)  # + test_splits, carved validation
    for split, arrays in raw.items():
        for key in (cfg.image_key, cfg.label_key):
            if key not in arrays:
                raise ValueError(
                    f"dataset {cfg.name!r} split {split!r} has no feature {key!r}; "
                    f"features: {', '.join(sorted(arrays))} (set dataset.image_key/label_key)"
                )
    extra = {}
    if kind == "text":
        from jaxclf.data import text

        splits, vocabulary = text.prepare(cfg, raw, cfg.train_split)
        extra = {"vocabulary": list(vocabulary), "max_length": cfg.max_length, "lowercase": cfg.text.lowercase}
    elif kind == "strokes":
        splits, extra = _prepare_strokes(cfg, raw, class_names or tuple(map(str, range(num_classes))))
    else:
        splits = {split: _prepare_dense(cfg, arrays) for split, arrays in raw.items()}
    if cfg.keep_classes:
        keep = _class_indices(cfg.keep_classes, class_names)
        splits = {k: _keep_classes(s, keep, num_classes) for k, s in splits.items()}
        class_names = tuple(class_names[c] for c in keep) if class_names else ()
        num_classes = len(keep)
    if cfg.examples_per_class:
        train = splits[cfg.train_split]
        splits[cfg.train_split] = _label_budget(train, cfg.examples_per_class, cfg.budget_seed)
    for name, split in splits.items():
        if split.num_examples == 0:
            raise ValueError(f"dataset {cfg.name!r} split {name!r} is empty after preprocessing/keep_classes/examples_per_class")
    if kind != "dense":  # token ids and normalised strokes are not standardised again
        return Dataset(cfg.name, splits, num_classes, class_names, preprocessing=extra)
    mean, std = _normalization_stats(cfg, splits[cfg.train_split].inputs)
    splits = {k: Split(((s.inputs - mean) / std).astype(np.float32), s.labels) for k, s in splits.items()}
    return Dataset(cfg.name, splits, num_classes, class_names, mean, std)


def _class_indices(classes, class_names: Sequence[str]) -> tuple[int, ...]:
    """``dataset.keep_classes`` as indices: an int stays, a name is looked up in ``class_names``."""
    out = []
    for c in classes:
        if isinstance(c, str):
            if c not in class_names:
                shown = ", ".join(map(repr, class_names[:12])) + (", ..." if len(class_names) > 12 else "")
                raise ValueError(f"dataset.keep_classes: {c!r} is not a class of this dataset (its classes: {shown or 'unnamed'})")
            c = list(class_names).index(c)
        out.append(int(c))
    return tuple(out)


def _keep_classes(split: Split, classes, num_classes: int) -> Split:
    """Only the examples of ``classes``, relabelled 0..len(classes)-1 in that order."""
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad or len(set(classes)) != len(classes):
        raise ValueError(f"dataset.keep_classes {tuple(classes)} must be distinct classes in [0, {num_classes})")
    relabel = np.full(num_classes, -1, np.int32)
    relabel[list(classes)] = np.arange(len(classes))
    kept = split.take(relabel[split.labels] >= 0)
    return dataclasses.replace(kept, labels=relabel[kept.labels])


def _label_budget(split: Split, per_class: int, seed: int) -> Split:
    """At most ``per_class`` examples of each class, drawn with ``seed`` (few-label training)."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(split.labels == c))[:per_class] for c in np.unique(split.labels)]
    return split.take(np.sort(np.concatenate(chosen)))


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)


def train_indices(seed: int, step: int, batch_size: int, n: int) -> np.ndarray:
    """Example indices of training step ``step``: a pure function of its arguments.

    Each epoch is a fresh permutation of ``range(n)`` seeded by ``(seed, epoch)``; steps
    walk through the concatenated epochs, so every example appears once per epoch.
    """
    positions = step * batch_size + np.arange(batch_size, dtype=np.int64)
    epochs, within = np.divmod(positions, n)
    out = np.empty(batch_size, np.int32)
    for epoch in np.unique(epochs):
        sel = epochs == epoch
        out[sel] = _epoch_permutation(seed, int(epoch), n)[within[sel]]
    return out


def index_tables(seed: int, ranges: Sequence[tuple[int, int]], batch_size: int, n: int) -> Iterator[dict]:
    """For each chunk ``(start, stop)`` of steps, a table from which ``table_indices`` gives
    every one of its steps' ``train_indices`` on the device, so that a step needs nothing
    from the host. The same table object is yielded again while it still covers the chunk
    (with one step per chunk a new one is needed about once per epoch).

    A table holds consecutive epochs' permutations, as many as the longest chunk can touch,
    and the position of a reference step's first example relative to its first epoch (kept
    small so that int32 arithmetic on the device cannot overflow).
    """
    longest = max((stop - start for start, stop in ranges), default=1)
    span = (longest * batch_size + n - 2) // n + 1  # epochs that many consecutive examples can touch
    table, first = None, 0
    for start, stop in ranges:
        lo, hi = start * batch_size // n, ((stop * batch_size) - 1) // n
        if table is None or lo < first or hi >= first + span:
            first = lo
            table = {
                "perms": np.stack([_epoch_permutation(seed, e, n) for e in range(lo, lo + span)]),
                "step": np.int32(start),
                "offset": np.int32(start * batch_size - lo * n),
            }
        yield table


def table_indices(table: dict, step: jax.Array, batch_size: int, n: int) -> jax.Array:
    """``train_indices(seed, step, batch_size, n)`` computed on the device from an
    ``index_tables`` table covering ``step``."""
    position = (step - table["step"]) * batch_size + table["offset"] + jnp.arange(batch_size, dtype=jnp.int32)
    return table["perms"][position // n, position % n]


def eval_batches(n: int, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(indices, mask) batches covering ``range(n)`` once; the last is padded and masked."""
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size, dtype=np.int32)
        mask = idx < n
        yield np.where(mask, idx, 0).astype(np.int32), mask.astype(np.float32)


def _random_crop(images: jax.Array, key: jax.Array, padding: int) -> jax.Array:
    """Zero-pads by ``padding`` and crops back at a random offset per image."""
    n, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1)

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


def _random_flip(images: jax.Array, key: jax.Array) -> jax.Array:
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1, :], images)


def augment_batch(batch: dict, key: jax.Array, augmentations: tuple[str, ...], cfg) -> dict:
    """Random training augmentation inside jit, in the listed order: images (NHWC, already
    normalised) 'random_crop' (``cfg.crop_padding``), 'flip'; stroke-5 sketches
    'stroke_scale' (``cfg.strokes.stroke_scale``), 'stroke_drop' (``cfg.strokes.stroke_drop``: dropped points
    shorten the sketch, so ``lengths`` follow)."""
    x = batch["inputs"]
    for i, name in enumerate(augmentations):
        sub = jax.random.fold_in(key, i)
        if name == "random_crop":
            x = _random_crop(x, sub, cfg.crop_padding)
        elif name == "flip":
            x = _random_flip(x, sub)
        elif name == "stroke_scale":
            x = strokes.scale_offsets(sub, x, cfg.strokes.stroke_scale)
        elif name == "stroke_drop":
            x = strokes.drop_points_batch(sub, x, cfg.strokes.stroke_drop)
        else:
            raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(AUGMENTATIONS)}")
    out = {**batch, "inputs": x}
    if "stroke_drop" in augmentations and "lengths" in batch:
        out["lengths"] = stroke5_length(x).astype(jnp.int32)
    return out
