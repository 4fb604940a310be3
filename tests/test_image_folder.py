"""Image folders: both layouts, deterministic splits, clear errors, bad files named."""

import logging

import numpy as np
import pytest
from PIL import Image

from jaxclf.data import image_folder
from jaxclf.data.image_folder import BadImageError, decode_image, load_image_folder


def write_images(folder, count, *, seed=0, fmt="png", size=(20, 12)):
    """``count`` random RGB images of ``size`` (w, h) in ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img{i:03d}.{fmt}"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8)).save(path)
        paths.append(path)
    return paths


def write_truncated_jpeg(path):
    """A JPEG cut in half: the header reads, the pixels do not."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture
def flat_folder(tmp_path):
    write_images(tmp_path / "hotdog", 10, seed=1)
    write_images(tmp_path / "not_hotdog", 6, seed=2, fmt="jpg", size=(9, 30))
    return tmp_path


def test_flat_folder_is_split_per_class_deterministically(flat_folder):
    a = load_image_folder(flat_folder, image_size=8, split_ratio=0.75, seed=3)
    b = load_image_folder(flat_folder, image_size=8, split_ratio=0.75, seed=3)
    c = load_image_folder(flat_folder, image_size=8, split_ratio=0.75, seed=4)
    assert a.class_names == ("hotdog", "not_hotdog")
    (xtr, ytr), (xte, yte) = a.splits["train"], a.splits["test"]
    assert xtr.dtype == np.uint8 and xtr.shape[1:] == (8, 8, 3) and ytr.dtype == np.int32
    assert np.bincount(ytr).tolist() == [8, 4] and np.bincount(yte).tolist() == [2, 2]
    for split in ("train", "test"):
        np.testing.assert_array_equal(a.splits[split][0], b.splits[split][0])
    assert not np.array_equal(a.splits["train"][0], c.splits["train"][0])
    # train and test are disjoint and cover every image
    all_images = np.concatenate([xtr, xte]).reshape(16, -1)
    assert len({row.tobytes() for row in all_images}) == 16


def test_split_folders_and_class_mismatch(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for k, name in enumerate(("a", "b")):
            write_images(tmp_path / split / name, n, seed=k)
    folder = load_image_folder(tmp_path, image_size=(6, 10), split_ratio=0.5, seed=0)
    assert set(folder.splits) == {"train", "test"}
    assert folder.splits["train"][0].shape == (6, 6, 10, 3)
    assert folder.splits["test"][1].tolist() == [0, 0, 1, 1]
    write_images(tmp_path / "test" / "c", 1)
    with pytest.raises(ValueError, match=r"differ.*only in test: \['c'\]"):
        load_image_folder(tmp_path, image_size=6)


def test_structural_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "nope", image_size=8)
    with pytest.raises(ValueError, match="no class folders"):
        load_image_folder(tmp_path, image_size=8)
    write_images(tmp_path / "full", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*empty\b.* every class needs images"):
        load_image_folder(tmp_path, image_size=8)
    with pytest.raises(ValueError, match="on_bad_file"):
        load_image_folder(tmp_path, image_size=8, on_bad_file="ignore")


def test_bad_files_are_named_and_skipped_or_fatal(flat_folder, caplog):
    (flat_folder / "hotdog" / "notes.jpg").write_text("not an image")
    write_truncated_jpeg(flat_folder / "not_hotdog" / "cut.jpg")
    (flat_folder / "not_hotdog" / "readme.txt").write_text("hi")
    with caplog.at_level(logging.WARNING):
        folder = load_image_folder(flat_folder, image_size=8, split_ratio=0.5)
    names = sorted(p.rsplit("/", 1)[1] for p, _ in folder.bad_files)
    assert names == ["cut.jpg", "notes.jpg", "readme.txt"]
    assert sum(len(y) for _, y in folder.splits.values()) == 16
    assert "skipped 3 unreadable files" in caplog.text and "cut.jpg" in caplog.text
    with pytest.raises(BadImageError, match="notes.jpg"):
        load_image_folder(flat_folder, image_size=8, on_bad_file="error")


def test_class_of_only_bad_files_is_an_error(tmp_path):
    write_images(tmp_path / "a", 2)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="no readable images"):
        load_image_folder(tmp_path, image_size=8)


def test_decode_image_formats_and_bombs(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (5, 7, 4), np.uint8), "RGBA")
    for fmt in ("png", "gif", "bmp", "webp"):
        rgba.convert("RGB" if fmt == "bmp" else "RGBA").save(tmp_path / f"x.{fmt}")
        assert decode_image(tmp_path / f"x.{fmt}", (4, 6)).shape == (4, 6, 3)
    Image.fromarray(np.zeros((5, 7), np.uint8), "L").save(tmp_path / "gray.png")
    assert decode_image(tmp_path / "gray.png", 3).shape == (3, 3, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 5x7 = 35 pixels: over the limit
    with pytest.raises(BadImageError, match="DecompressionBomb"):
        decode_image(tmp_path / "gray.png", 3)


def test_read_splits_uses_dataset_keys(flat_folder):
    import ml_collections

    cfg = ml_collections.ConfigDict(dict(data_dir=str(flat_folder), resize=(8, 8), image_key="image", label_key="label",
                                         image_folder=dict(split_ratio=0.5, split_seed=0, on_bad_file="skip",
                                                           allow_single_class=False)))
    splits, names = image_folder.read_splits(cfg)
    assert names == ("hotdog", "not_hotdog") and set(splits["train"]) == {"image", "label"}


def test_one_class_is_refused_unless_allowed(tmp_path):
    """A folder of one class (often a path one level too deep) names the option that allows it,
    in both layouts; with the option it loads, every label 0."""
    write_images(tmp_path / "flat" / "cat", 4)
    write_images(tmp_path / "split" / "train" / "cat", 2)
    write_images(tmp_path / "split" / "test" / "cat", 2, seed=3)
    for root in (tmp_path / "flat", tmp_path / "split"):
        with pytest.raises(ValueError, match=r"one class folder \('cat'\).*dataset\.image_folder\.allow_single_class=True"):
            load_image_folder(root, image_size=8)
        folder = load_image_folder(root, image_size=8, allow_single_class=True)
        assert folder.class_names == ("cat",)
        assert sorted(folder.splits) == ["test", "train"]
        assert sum(len(y) for _, y in folder.splits.values()) == 4
        assert not any(y.any() for _, y in folder.splits.values())


def test_config_opt_in_reaches_the_folder(tmp_path):
    from jaxclf import config as config_lib
    from jaxclf import data

    write_images(tmp_path / "cat", 4)
    cfg = config_lib.base_config().dataset
    cfg.name, cfg.data_dir, cfg.resize, cfg.normalize = "image_folder", str(tmp_path), (8, 8), "unit"
    with pytest.raises(ValueError, match="allow_single_class"):
        data.load(cfg)
    cfg.image_folder.allow_single_class = True
    assert data.load(cfg).class_names == ("cat",)
