"""Image-folder datasets: one sub-folder per class, decoded into memory.

Two layouts:

* ``PATH/<class>/*.jpg``: each class is split deterministically (a seeded permutation of its
  sorted file names) into ``train`` (``split_ratio`` of it) and ``test``;
* ``PATH/train/<class>/...`` and ``PATH/test/<class>/...`` (also ``validation``/``val``):
  the folders are the splits, and every split must have the same class folders.

Class names are the sorted folder names; label i is class_names[i]. Images are decoded with
PIL (EXIF orientation applied, converted to RGB) and resized to ``image_size`` at decode
time, so a folder of mixed sizes stacks into one uint8 NHWC array. :func:`decode_image` is
also what ``jaxclf.predict`` uses, so prediction preprocesses exactly as training did.

A file that cannot be decoded (corrupt, truncated, not an image, a decompression bomb) is
named: skipped with a warning listing it (``on_bad_file='skip'``) or an error (``'error'``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
SPLIT_FOLDERS = ("train", "validation", "val", "test")
BAD_FILE_POLICIES = ("skip", "error")


class BadImageError(ValueError):
    """A file that is not a decodable image; the message names the file and the reason."""


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    splits: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (uint8 NHWC images, int32 labels)
    class_names: tuple[str, ...]
    bad_files: tuple[tuple[str, str], ...] = ()  # (path, reason) of skipped files


def _size(image_size) -> tuple[int, int]:
    """(height, width) from an int or a pair."""
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def decode_image(source, image_size, channels: int = 3) -> np.ndarray:
    """uint8 (H, W, channels) image from a path or file object, resized (bilinear) to
    ``image_size``; ``channels`` 3 is RGB, 1 grayscale.

    Raises BadImageError for anything PIL cannot fully decode, including truncated files and
    images over PIL's decompression-bomb pixel limit (``Image.MAX_IMAGE_PIXELS``), whose
    warning is turned into an error: such a file would exhaust memory, not train a model.
    """
    h, w = _size(image_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                img.load()  # decodes everything now: truncation shows here, not later
                img = ImageOps.exif_transpose(img).convert("L" if channels == 1 else "RGB")
                if img.size != (w, h):
                    img = img.resize((w, h), Image.Resampling.BILINEAR)
                return np.asarray(img, np.uint8).reshape(h, w, channels)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImageError(f"{source}: {type(e).__name__}: {e}") from None


def _class_folders(root: Path) -> list[str]:
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise ValueError(f"{root} has no class folders (expected {root}/<class>/<image files>)")
    return names


def _files(folder: Path) -> list[Path]:
    """Every non-hidden file in ``folder`` and below, sorted; an empty class is an error."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"class folder {folder} is empty: every class needs images (add some, or remove the folder)")
    return files


def _decode_all(files: Sequence[Path], image_size, on_bad_file: str):
    """(images, ok mask, bad (path, reason) list); decodes in threads (PIL releases the GIL)."""

    def one(path):
        if path.suffix.lower() not in EXTENSIONS:
            return None, f"not an image file extension ({', '.join(EXTENSIONS)})"
        try:
            return decode_image(path, image_size), None
        except BadImageError as e:
            return None, str(e).split(": ", 1)[1]

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(one, files))
    bad = [(str(f), reason) for f, (_, reason) in zip(files, results) if reason]
    if bad and on_bad_file == "error":
        raise BadImageError(f"{len(bad)} unreadable files, e.g. " + "; ".join(f"{p}: {r}" for p, r in bad[:5]))
    images = [img for img, _ in results if img is not None]
    return images, bad


def _load_split(folders: dict[str, Path], class_names, image_size, on_bad_file):
    """(images, labels, bad files) of one split given its class folders."""
    h, w = _size(image_size)
    images, labels, bad = [], [], []
    for label, name in enumerate(class_names):
        decoded, skipped = _decode_all(_files(folders[name]), image_size, on_bad_file)
        if not decoded:
            raise ValueError(f"class folder {folders[name]} has no readable images ({len(skipped)} unreadable)")
        images += decoded
        labels += [label] * len(decoded)
        bad += skipped
    stacked = np.stack(images) if images else np.zeros((0, h, w, 3), np.uint8)
    return stacked, np.asarray(labels, np.int32), bad


def _split_indices(n: int, ratio: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of one class: ``ratio`` of it to train, at least one in each when n > 1."""
    order = rng.permutation(n)
    k = min(max(int(round(ratio * n)), 1), n - 1) if n > 1 else n
    return np.sort(order[:k]), np.sort(order[k:])


def _check_class_count(root: Path, class_names: Sequence[str], allow_single_class: bool) -> None:
    """One class folder is almost always a mistake (a path one level too deep, or the other
    classes not copied yet): a classifier of one class learns nothing."""
    if len(class_names) == 1 and not allow_single_class:
        raise ValueError(
            f"image folder {root} has one class folder ({class_names[0]!r}); a classifier needs two or more "
            f"(expected {root}/<class>/<image files>); set dataset.image_folder.allow_single_class=True to train on one anyway"
        )


def load_image_folder(path, *, image_size, split_ratio: float = 0.8, seed: int = 0,
                      on_bad_file: str = "skip", allow_single_class: bool = False) -> ImageFolder:
    """Decodes the image folder at ``path``; see the module docstring for the layouts.

    ``split_ratio`` is the fraction of each class that goes to ``train`` when the folder has
    no split folders (per class, so both splits keep the class balance); ``seed`` fixes which.
    A folder of one class is an error unless ``allow_single_class``; an empty class always is.
    """
    if on_bad_file not in BAD_FILE_POLICIES:
        raise ValueError(f"on_bad_file must be one of {BAD_FILE_POLICIES}, got {on_bad_file!r}")
    if not 0.0 < split_ratio < 1.0:
        raise ValueError(f"split_ratio (the train fraction) must be in (0, 1), got {split_ratio}")
    root = Path(path) if path is not None else None
    if root is None or not root.is_dir():
        raise FileNotFoundError(f"image folder {path!r} does not exist (set dataset.data_dir)")

    split_dirs = {s: root / s for s in SPLIT_FOLDERS if (root / s).is_dir()}
    if "train" in split_dirs:
        per_split = {s: _class_folders(d) for s, d in split_dirs.items()}
        class_names = per_split["train"]
        _check_class_count(split_dirs["train"], class_names, allow_single_class)
        for split, names in per_split.items():
            if names != class_names:
                raise ValueError(
                    f"class folders of {split_dirs[split]} differ from {split_dirs['train']}: "
                    f"only in {split}: {sorted(set(names) - set(class_names))}, "
                    f"missing: {sorted(set(class_names) - set(names))}"
                )
        splits, bad = {}, []
        for split, directory in split_dirs.items():
            x, y, skipped = _load_split({c: directory / c for c in class_names}, class_names, image_size, on_bad_file)
            splits[split] = (x, y)
            bad += skipped
    else:
        class_names = _class_folders(root)
        _check_class_count(root, class_names, allow_single_class)
        x, y, bad = _load_split({c: root / c for c in class_names}, class_names, image_size, on_bad_file)
        rng = np.random.default_rng(seed)
        parts = [_split_indices(int(n), split_ratio, rng) for n in np.bincount(y, minlength=len(class_names))]
        offsets = np.concatenate([[0], np.cumsum(np.bincount(y, minlength=len(class_names)))[:-1]])
        train = np.concatenate([o + tr for o, (tr, _) in zip(offsets, parts)])
        test = np.concatenate([o + te for o, (_, te) in zip(offsets, parts)])
        splits = {"train": (x[train], y[train]), "test": (x[test], y[test])}
    if bad:
        logging.warning("skipped %d unreadable files in %s: %s", len(bad), root,
                        "; ".join(f"{p} ({r})" for p, r in bad))
    return ImageFolder(splits, tuple(class_names), tuple(bad))


def read_splits(cfg) -> tuple[dict[str, dict[str, np.ndarray]], tuple[str, ...]]:
    """The folder as ``{split: {image_key: uint8 NHWC, label_key: int32}}`` plus class names,
    for ``jaxclf.data.load`` (``cfg`` is the config's ``dataset`` section)."""
    if cfg.resize is None:
        raise ValueError("dataset.resize (height, width) is required for image folders")
    f = cfg.image_folder
    folder = load_image_folder(
        cfg.data_dir, image_size=tuple(cfg.resize), split_ratio=f.split_ratio, seed=f.split_seed,
        on_bad_file=f.on_bad_file, allow_single_class=f.allow_single_class,
    )
    splits = {s: {cfg.image_key: x, cfg.label_key: y} for s, (x, y) in folder.splits.items()}
    return splits, folder.class_names


def write_synthetic_folder(path, class_names: Sequence[str] = ("hotdog", "not_hotdog"), per_class: int = 8,
                           size: int = 32, seed: int = 0) -> Path:
    """A small learnable image folder (``PATH/<class>/NNN.png``): each class is noise around its
    own colour. For smoke runs and tests; does nothing for images that already exist."""
    root = Path(path)
    rng = np.random.default_rng(seed)
    for k, name in enumerate(class_names):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = rng.integers(40, 216, 3)
        for i in range(per_class):
            target = folder / f"{i:03d}.png"
            if not target.exists():
                noise = rng.normal(0, 30, (size, size, 3))
                Image.fromarray(np.clip(colour + noise, 0, 255).astype(np.uint8)).save(target)
    return root
