"""Where examples come from: TFDS datasets prepared as ArrayRecord files and read by index
(``tfds.data_source``), decoded with numpy and PIL. No TensorFlow.

* The bundled datasets (``jaxclf.data.builders``) have plain-tensor features, so TFDS
  prepares them on first use without TensorFlow or network.
* A catalog dataset (``mnist``, ``cifar10``, ``imdb_reviews``) is read the same way once it is
  prepared as ArrayRecord. Preparing one runs its TFDS builder, and most of them encode with
  TensorFlow: that is the ``prepare`` extra, and the only use jaxclf has for TensorFlow.

A dataset that is not there fails at once, saying where it looked and how to prepare it,
rather than after TFDS's retries of a download that cannot succeed.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import urllib.parse
from pathlib import Path
from unittest import mock

import numpy as np
import tensorflow_datasets as tfds

from jaxclf.data.builders import BUILDERS

FILE_FORMAT = "array_record"
PREPARE_EXTRA = "pip install 'jaxclf[prepare]'"
OTHER_SOURCES = ("image_folder",)  # dataset names that are not TFDS datasets


def base_name(name: str) -> str:
    """``'first_symbol/t100'`` -> ``'first_symbol'``, ``'mnist:3.0.1'`` -> ``'mnist'``."""
    return name.split("/")[0].split(":")[0]


def _catalog() -> list[str]:
    return tfds.list_builders(with_community_datasets=False)


def check_exists(name: str, data_dir: str | None = None) -> None:
    """Raises a one-line ValueError if ``name`` is neither bundled, an image folder, a TFDS
    catalog dataset nor prepared in ``data_dir``; it names the bundled datasets and, when one
    is close, suggests it."""
    base = base_name(name)
    if base in BUILDERS or base in OTHER_SOURCES:
        return
    catalog = _catalog()
    if base in catalog or (data_dir and (Path(data_dir) / base).is_dir()):
        return
    names = list(dict.fromkeys([*BUILDERS, *OTHER_SOURCES, *catalog]))  # the bundled ones are registered too
    close = difflib.get_close_matches(base, names, n=3, cutoff=0.75)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    missing_tf = "" if _tensorflow_installed() else (
        f" (without TensorFlow TFDS cannot list the catalog builders that import it, e.g. glue: {PREPARE_EXTRA})")
    raise ValueError(
        f"unknown dataset {name!r}: {hint}bundled datasets: {', '.join(BUILDERS)}; also "
        f"image_folder, or a TFDS catalog name (tfds.list_builders()){missing_tf}"
    )


def _tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _where(cfg) -> str:
    return cfg.data_dir or "the default TFDS data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"


def _build_command(cfg) -> str:
    data_dir = f" --data_dir={cfg.data_dir}" if cfg.data_dir else ""
    return f"tfds build {cfg.name}{data_dir} --file_format={FILE_FORMAT}"


def _builder(cfg) -> tfds.core.DatasetBuilder:
    """``tfds.builder`` for ArrayRecord files, its errors turned into one line each."""
    try:
        return tfds.builder(cfg.name, data_dir=cfg.data_dir, file_format=FILE_FORMAT)
    except tfds.core.registered.DatasetNotFoundError:
        if base_name(cfg.name) in BUILDERS or _tensorflow_installed():
            raise ValueError(f"dataset {cfg.name!r}: no such TFDS dataset or config") from None
        raise FileNotFoundError(
            f"dataset {cfg.name!r} is not prepared in {_where(cfg)}, and its TFDS builder needs "
            f"TensorFlow, which is not installed: {PREPARE_EXTRA}, then {_build_command(cfg)}"
        ) from None
    except (ValueError, AssertionError) as e:  # TFDS: a wrong config or version, another file format
        text = str(e)
        if "file format is already set" in text.lower():
            raise ValueError(
                f"dataset {cfg.name!r} in {_where(cfg)} is prepared as tfrecord; jaxclf reads ArrayRecord "
                f"files: prepare it again into a data_dir without the tfrecord copy: {_build_command(cfg)}"
            ) from None
        if "BuilderConfig" in text and "/" in cfg.name:
            configs = [c.name for c in tfds.builder_cls(base_name(cfg.name)).BUILDER_CONFIGS]
            raise ValueError(f"dataset {cfg.name!r}: no such config; configs: {', '.join(configs)}") from None
        reason = " ".join(text.split('}": ', 1)[-1].split())  # TFDS's reason without its builder_kwargs
        raise ValueError(f"dataset {cfg.name!r}: {reason[:300]}") from None


@contextlib.contextmanager
def _few_download_retries():
    """TFDS retries a failing download ten times with exponential backoff (3.5 minutes
    without network); one retry tells a missing network from a blip in seconds."""
    from tensorflow_datasets.core.download import downloader

    with mock.patch.object(downloader, "MAX_RETRIES", 1):
        yield


def _download_and_prepare(builder) -> None:
    """``builder.download_and_prepare`` as ArrayRecord; a missing manual download (QuickDraw
    files, ImageNet) is a one-line FileNotFoundError with the builder's instructions."""
    try:
        builder.download_and_prepare(file_format=FILE_FORMAT)
    except AssertionError as e:  # TFDS asserts that the manual dir exists and is not empty
        if "manual directory" not in str(e).lower():
            raise
        raise FileNotFoundError(" ".join(str(e).split())) from None


def _prepare_catalog(builder, cfg) -> None:
    """Downloads and prepares a catalog dataset as ArrayRecord (needs the prepare extra)."""
    missing = f"dataset {cfg.name!r} is not prepared in {builder.data_dir}"
    if not cfg.download:
        raise FileNotFoundError(f"{missing} (dataset.download=False); prepare it with {_build_command(cfg)}")
    if not _tensorflow_installed():
        raise FileNotFoundError(
            f"{missing}, and preparing a TFDS catalog dataset needs TensorFlow, which is not "
            f"installed: {PREPARE_EXTRA} (or run {_build_command(cfg)} where it is, and set dataset.data_dir)"
        )
    try:
        with _few_download_retries():
            _download_and_prepare(builder)
    except OSError as e:  # requests' connection errors are OSErrors
        url = getattr(getattr(e, "request", None), "url", None)
        source = f" from {urllib.parse.urlsplit(url).netloc}" if url else ""
        raise FileNotFoundError(
            f"{missing} and could not be downloaded{source} ({type(e).__name__}); prepare it where "
            f"there is network with {_build_command(cfg)} and point dataset.data_dir at it"
        ) from None


def prepared_builder(cfg) -> tfds.core.DatasetBuilder:
    """The TFDS builder of ``cfg.name`` with its ArrayRecord files prepared: a bundled dataset
    is prepared here (no TensorFlow, no network); a catalog one is downloaded and prepared if
    ``cfg.download`` and TensorFlow is installed, else a FileNotFoundError says how to."""
    check_exists(cfg.name, cfg.data_dir)
    builder = _builder(cfg)
    if builder.is_prepared():
        return builder
    if base_name(cfg.name) in BUILDERS:
        _download_and_prepare(builder)
    else:
        _prepare_catalog(builder, cfg)
    return builder


def prepare(cfg) -> None:
    """Prepares the configured dataset once (e.g. before a sweep's parallel runs)."""
    if cfg.name not in OTHER_SOURCES:
        prepared_builder(cfg)


def _stack(values: list) -> np.ndarray:
    """One feature of many examples: stacked when every value has one shape, else an object
    array (variable-length sketches); strings become an object array of str."""
    first = np.asarray(values[0])
    if first.dtype.kind in "OUS" or any(np.shape(v) != first.shape for v in values):
        out = np.empty(len(values), object)
        out[:] = values
        return out
    return np.stack(values)


def read_split(builder, split: str) -> dict[str, np.ndarray]:
    """Every example of ``split`` (TFDS split syntax: ``'train[:80%]'``, ``'train+test'``) as
    ``{feature: array}``, read by index (about 30 us an example)."""
    try:
        source = builder.as_data_source(split=split)
    except (KeyError, ValueError, AssertionError) as e:
        splits = ", ".join(builder.info.splits.keys())
        raise ValueError(f"dataset {builder.name!r} has no split {split!r} ({e}); its splits: {splits} "
                         "(slices such as 'train[:80%]' are allowed)") from None
    n = len(source)
    if n == 0:
        raise ValueError(f"dataset {builder.name!r} split {split!r} is empty")
    examples = [source[i] for i in range(n)]
    return {key: _stack([e[key] for e in examples]) for key in examples[0]}
