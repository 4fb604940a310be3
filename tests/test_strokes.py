"""Stroke formats (jaxclf.ops.strokes), normalisation, augmentation, the .npz builder, shapes
and rendering."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxclf.data import strokes as S
from jaxclf.data.builders import sketches
from jaxclf.ops import render, strokes as F


def _sketch():
    # two strokes: an L (3 points) then, after a lift, a single dot-like segment
    return np.array([[1, 2, 0], [3, 0, 0], [0, 4, 1], [5, 5, 0], [1, 1, 1]], np.float32)


def test_stroke3_stroke5_round_trip():
    s3 = _sketch()
    s5 = F.to_stroke5(s3, max_len=8)
    assert s5.shape == (8, 5)
    np.testing.assert_array_equal(s5[:5, 2:].sum(-1), 1)  # one-hot pen state
    np.testing.assert_array_equal(s5[5:], np.tile(F.END_ROW, (3, 1)))  # padding = end rows
    np.testing.assert_array_equal(s5[:5, 3], s3[:, 2])
    assert F.stroke5_length(s5) == 5
    np.testing.assert_array_equal(F.to_stroke3(s5), s3)


def test_to_stroke5_rejects_long_sketch_and_lengths_in_jax():
    with pytest.raises(ValueError, match="max_len"):
        F.to_stroke5(_sketch(), max_len=4)
    batch = np.stack([F.to_stroke5(_sketch()[:k], 6) for k in (1, 3, 5)])
    np.testing.assert_array_equal(F.stroke5_length(jax.numpy.asarray(batch)), [1, 3, 5])


def test_to_absolute_splits_at_pen_lifts():
    lines = F.to_absolute(_sketch())
    assert [len(l) for l in lines] == [3, 2]
    np.testing.assert_array_equal(lines[1], [[9, 11], [10, 12]])


def test_build_filters_normalises_with_train_scale_and_pads():
    rng = np.random.default_rng(0)
    train = [np.c_[rng.normal(0, 7, (n, 2)), np.zeros(n)] for n in (3, 5, 9)]
    raw = {"train": (train, [0, 1, 0]), "test": (train[:1], [1])}
    data = S.build(raw, ("a", "b"), max_len=6)
    split = data.splits["train"]
    np.testing.assert_array_equal(split.lengths, [3, 5])  # the 9-point sketch is dropped
    np.testing.assert_array_equal(split.labels, [0, 1])
    assert np.isclose(data.scale, np.std(np.concatenate([s[:, :2].ravel() for s in train[:2]])))
    valid = split.strokes[..., 4] == 0
    assert np.isclose(np.std(split.strokes[..., :2][valid]), 1.0, atol=1e-5)
    np.testing.assert_allclose(data.splits["test"].strokes[0, :3, :2], train[0][:, :2] / data.scale, rtol=1e-6)


def test_quickdraw_npz_files_load_through_tfds(tmp_path):
    """QuickDraw sketch-rnn .npz files in the manual dir -> the sketch_quickdraw TFDS builder ->
    data.load: labels and names of QuickDraw's 345 categories whichever files are present,
    over-long sketches dropped, stroke-5 with lengths."""
    from jaxclf import config as config_lib
    from jaxclf import data

    rng = np.random.default_rng(1)

    def split(n, long=0):
        arr = np.empty(n + long, dtype=object)
        for i in range(n + long):
            k = 12 if i >= n else rng.integers(2, 6)
            arr[i] = np.c_[rng.integers(-20, 20, (k, 2)), np.r_[np.zeros(k - 1), 1]].astype(np.int16)
        return arr

    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    for name, n in (("dog", 3), ("cat", 4)):
        np.savez(manual / f"{name}.npz", train=split(n, long=1), valid=split(2), test=split(2))
    cfg = config_lib.base_config().dataset
    cfg.name, cfg.data_dir, cfg.image_key, cfg.max_length = "sketch_quickdraw", str(tmp_path), "strokes", 10
    cfg.eval_splits = ("valid", "test")
    ds = data.load(cfg)
    train = ds.splits["train"]
    cat, dog = S.QUICKDRAW_CLASSES.index("cat"), S.QUICKDRAW_CLASSES.index("dog")
    np.testing.assert_array_equal(np.sort(train.labels), [cat] * 4 + [dog] * 3)
    assert len(ds.class_names) == 345 and (ds.class_names[cat], ds.class_names[dog]) == ("cat", "dog")
    assert train.inputs.shape == (7, 10, 5) and ds.splits["valid"].inputs.shape == (4, 10, 5)
    np.testing.assert_array_equal(train.lengths, F.stroke5_length(train.inputs))
    assert (train.lengths >= 2).all() and (train.lengths <= 5).all()
    assert ds.preprocessing["max_length"] == 10 and ds.preprocessing["stroke_scale"] > 0

    cfg.keep_classes = ("dog", "cat")  # by name: relabelled 0, 1 in this order
    kept = data.load(cfg)
    assert kept.class_names == ("dog", "cat") and kept.num_classes == 2
    np.testing.assert_array_equal(np.sort(kept.splits["train"].labels), [0, 0, 0, 1, 1, 1, 1])
    cfg.keep_classes = ("dog", "kitten")
    with pytest.raises(ValueError, match=r"keep_classes: 'kitten' is not a class of this dataset \(its classes: 'aircraft carrier'"):
        data.load(cfg)
    cfg.keep_classes = ()

    np.savez(manual / "kitten.npz", train=split(1), valid=split(1), test=split(1))
    cfg.data_dir = str(tmp_path / "other")  # prepared anew, from the same manual dir
    (tmp_path / "other" / "downloads").mkdir(parents=True)
    (tmp_path / "other" / "downloads" / "manual").symlink_to(manual)
    with pytest.raises(ValueError, match=r"\['kitten.npz'\] in .* are not QuickDraw categories"):
        data.load(cfg)


def _quickdraw_config(data_dir):
    from jaxclf import config as config_lib

    cfg = config_lib.base_config().dataset
    cfg.name, cfg.data_dir, cfg.image_key, cfg.max_length = "sketch_quickdraw", str(data_dir), "strokes", 10
    return cfg


@pytest.mark.parametrize("content,message", [
    (None, r"Manual directory .*manual does not exist or is empty.* Put <category>\.npz files"),
    (b"not a zip file", r"cat\.npz is not a readable sketch-rnn \.npz file"),
    ("truncated", r"cat\.npz is not a readable sketch-rnn \.npz file"),
    ({"train": [], "valid": [], "test": []}, r"cat\.npz holds no sketches"),
    ({"train": [np.zeros((2, 3), np.int16)]}, r"cat\.npz has no valid/test array"),
])
def test_unusable_quickdraw_files_are_named(tmp_path, content, message):
    """An empty manual dir, a corrupt file, a file without sketches or without a split: one
    ValueError/FileNotFoundError naming the file, before anything is prepared."""
    from jaxclf import data

    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    if isinstance(content, bytes):
        (manual / "cat.npz").write_bytes(content)
    elif content == "truncated":  # a download cut short
        np.savez(manual / "cat.npz", train=np.zeros((40, 3)), valid=np.zeros((4, 3)), test=np.zeros((4, 3)))
        (manual / "cat.npz").write_bytes((manual / "cat.npz").read_bytes()[:300])
    elif content is not None:
        arrays = {k: np.array(v + [None], dtype=object)[:-1] for k, v in content.items()}  # object arrays, as QuickDraw's
        np.savez(manual / "cat.npz", **arrays)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        data.load(_quickdraw_config(tmp_path))
    assert not list((tmp_path / "sketch_quickdraw").glob("*/*.array_record*"))


def test_shapes_are_deterministic_and_valid():
    a, la = S.make_shapes(3, seed=5)
    b, lb = S.make_shapes(3, seed=5)
    c, _ = S.make_shapes(3, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and np.array_equal(la, lb)
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(la[:5], np.arange(5))
    for s in a:  # one stroke each: pen lifted only after the last point
        np.testing.assert_array_equal(s[:, 2], np.r_[np.zeros(len(s) - 1), 1])
    data = S.shapes_data(num_train=10, num_test=2)
    assert data.splits["train"].strokes.shape == (50, 32, 5)
    assert data.splits["train"].lengths.max() < 32  # every sketch keeps an end row


def test_augment_keeps_kept_points_and_end_rows():
    data = S.shapes_data(num_train=4, num_test=1)
    s5 = data.splits["train"].strokes
    out = np.asarray(S.drop_points_batch(jax.random.key(0), jnp.asarray(s5), 0.5))
    n_in, n_out = F.stroke5_length(s5), F.stroke5_length(out)
    assert (n_out < n_in).any() and (n_out >= 2).all()
    for x, y, a, b in zip(s5, out, n_in, n_out):
        pts_in = np.cumsum(x[:a, :2], 0)
        pts_out = np.cumsum(y[:b, :2], 0)
        # every output point is an input point, and the end point is kept
        assert all(np.abs(pts_in - p).sum(-1).min() < 1e-4 for p in pts_out)
        np.testing.assert_allclose(pts_out[-1], pts_in[-1], atol=1e-4)
        np.testing.assert_array_equal(y[b:], np.tile(F.END_ROW, (len(y) - b, 1)))
    scaled = np.asarray(S.scale_offsets(jax.random.key(1), jnp.asarray(s5), 0.2))
    ratio = scaled[:, 1, :2] / s5[:, 1, :2]
    assert ((ratio > 0.79) & (ratio < 1.21)).all() and not np.allclose(ratio, 1)


def test_render_svg_and_png(tmp_path):
    svg = render.to_svg(_sketch())
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    path = render.save_grid([_sketch()] * 3, tmp_path / "g.png", ncols=2, titles=["a", "b", "c"])
    assert path.stat().st_size > 1000


def test_tfds_builders_are_registered_and_generate_stroke3():
    import tensorflow_datasets as tfds

    assert tfds.builder_cls("sketch_shapes") is sketches.SketchShapes
    assert tfds.builder_cls("sketch_quickdraw") is sketches.SketchQuickdraw
    examples = list(sketches.shape_examples(2, 0))
    assert len(examples) == 10 and examples[3][1]["label"] == 3
    assert examples[0][1]["strokes"].shape[1] == 3
