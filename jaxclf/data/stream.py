"""The streaming input path, for datasets too large for memory (ImageNet): TFDS's ArrayRecord
files read by index without TensorFlow (images stay encoded bytes; PIL decodes them), each
example preprocessed in grain worker processes, batches built per step.

It keeps the in-memory pipeline's guarantees:

* the batch of step ``s`` is a pure function of ``(seed, s)``: its example indices come from
  :func:`jaxclf.data.train_indices`, and each example's random crop and flip from a generator
  seeded by ``(seed, s, position in the global batch)`` -- never from a stream's history or a
  worker's timing -- so a resumed run, and one with other numbers of workers, devices or
  processes, sees exactly the same batches;
* evaluation visits every example once (:func:`jaxclf.data.eval_batches`: the last batch is
  padded and masked; padding rows are zeros and are never read).

A multi-process run splits the work: each process reads and decodes only its ``rows`` of every
global batch (the positions its devices hold, from the batch sharding). Batches leave the host
as uint8, a quarter of float32's host-to-device traffic; the jitted step normalises them on the
device (:func:`normalize`, bitwise the in-memory path's float computation).

Workers (``dataset.stream.num_workers`` processes, grain's ``mp_prefetch``; 0 decodes in the training
process) build whole batches in turn: with ``k`` workers, worker ``i`` builds the ``i``-th,
``(i + k)``-th, ... and the training process takes them in order. Once started (a few seconds
of imports), each worker runs in a session of its own, so a Ctrl-C or a scheduler's signal to
the job's process group reaches only the training process, which stops its workers when it
stops reading (on return, error, preemption or KeyboardInterrupt); a worker also exits when the
training process dies (even by SIGKILL). Scripts that stream with workers need the
``if __name__ == "__main__":`` guard: workers are spawned, and re-import the main module.
A worker's error, or its death, is raised in the training process as :class:`StreamError`.

Preprocessing (as torchvision's ImageNet references): train = ``RandomResizedCrop(resize,
scale=(0.08, 1), ratio=(3/4, 4/3))`` + horizontal flip (``dataset.augment``); eval (and train
without augmentation) = shorter side to ``dataset.stream.eval_resize`` then a center crop of
``dataset.resize`` (``eval_resize=0``: the whole image resized to ``dataset.resize``). Inputs
are normalised with the explicit ``dataset.mean`` / ``dataset.std`` (in [0, 1] units):
streaming cannot measure the train split's statistics.
"""

from __future__ import annotations

import dataclasses
import io
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from typing import Any, Callable, Iterator, Sequence, TypeVar

import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

import jaxclf.data.builders  # noqa: F401  (registers the offline builders with TFDS)
from jaxclf.data.input_pipeline import train_indices

AUGMENTATIONS = ("random_resized_crop", "flip")
CROP_SCALE = (0.08, 1.0)  # torchvision RandomResizedCrop defaults (Szegedy et al. 2015)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)

T = TypeVar("T")


class StreamError(RuntimeError):
    """Reading or preprocessing a streamed batch failed (in a worker, or the worker died)."""


def open_source(cfg, split: str):
    """Random access to one split of a TFDS dataset prepared as ArrayRecord (images undecoded)."""
    decoders = {cfg.image_key: tfds.decode.SkipDecoding()}
    try:
        return tfds.data_source(cfg.name, split=split, data_dir=cfg.data_dir, download=cfg.download,
                                decoders=decoders, builder_kwargs={"file_format": "array_record"})
    except Exception as e:  # TFDS: "Random access ... not supported" / "File format is already set"
        if "file format" not in str(e).lower():
            raise
        raise ValueError(
            f"dataset {cfg.name!r} in {cfg.data_dir or 'the default TFDS data_dir'} is prepared as "
            "tfrecord, which cannot be read by index; streaming (dataset.in_memory=False) needs "
            "ArrayRecord files. Prepare it with file_format='array_record', e.g.\n"
            f"    tfds.builder({cfg.name!r}, data_dir=DIR, file_format='array_record').download_and_prepare()\n"
            "or `tfds build NAME --file_format=array_record --data_dir=DIR` (tfds.load/tfds.data_source: "
            "builder_kwargs={'file_format': 'array_record'}), into a data_dir without the tfrecord copy, "
            f"or train in memory (dataset.in_memory=True). TFDS said: {e}"
        ) from None


def random_resized_crop_box(rng: np.random.Generator, height: int, width: int,
                            scale=CROP_SCALE, ratio=CROP_RATIO) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` as torchvision's ``RandomResizedCrop.get_params``: ten tries at an
    area fraction in ``scale`` and a log-uniform aspect ratio in ``ratio``, else a center crop
    of the whole image clamped to ``ratio``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop_box(height: int, width: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of torchvision's ``CenterCrop``."""
    h, w = size
    return int(round((height - h) / 2.0)), int(round((width - w) / 2.0)), h, w


def _to_pil(image) -> Image.Image:
    if isinstance(image, (bytes, np.bytes_)):
        img = Image.open(io.BytesIO(image))
        img.load()
        return img
    image = np.asarray(image)
    return Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image)


def _as_array(img: Image.Image, channels: int) -> np.ndarray:
    mode = "L" if channels == 1 else "RGB"
    if img.mode != mode:
        img = img.convert(mode)
    return np.asarray(img, dtype=np.uint8).reshape(img.height, img.width, channels)


def preprocess_train(image, rng: np.random.Generator, size: tuple[int, int], *, channels: int = 3,
                     flip: bool = True) -> np.ndarray:
    """Random-resized crop to ``size`` (bilinear) and a random horizontal flip; uint8 HWC."""
    img = _to_pil(image)
    top, left, h, w = random_resized_crop_box(rng, img.height, img.width)
    img = img.resize((size[1], size[0]), Image.BILINEAR, box=(left, top, left + w, top + h))
    out = _as_array(img, channels)
    if flip and rng.random() < 0.5:
        out = out[:, ::-1]
    return out


def preprocess_eval(image, size: tuple[int, int], eval_resize: int, *, channels: int = 3) -> np.ndarray:
    """Shorter side to ``eval_resize`` then a center crop of ``size``; uint8 HWC.
    ``eval_resize=0``: the whole image resized to ``size``."""
    img = _to_pil(image)
    if not eval_resize:
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        return _as_array(img, channels)
    width, height = img.size
    if min(width, height) != eval_resize:  # torchvision Resize(int): the long side truncated
        if width <= height:
            new_w, new_h = eval_resize, int(eval_resize * height / width)
        else:
            new_w, new_h = int(eval_resize * width / height), eval_resize
        img = img.resize((new_w, new_h), Image.BILINEAR)
    top, left, h, w = center_crop_box(img.height, img.width, size)
    if (h, w) != (img.height, img.width):
        img = img.crop((left, top, left + w, top + h))
    return _as_array(img, channels)


def normalization(cfg, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean, std) in [0, 1] units; ``standardize`` needs them in the config."""
    if cfg.normalize == "none":
        return np.zeros(channels, np.float32), np.ones(channels, np.float32)
    if cfg.normalize == "unit":
        return np.full(channels, 0.5, np.float32), np.full(channels, 0.5, np.float32)
    if cfg.get("mean") is None or cfg.get("std") is None:
        raise ValueError(
            "streaming (dataset.in_memory=False) cannot measure the train split's mean/std: set "
            "dataset.mean and dataset.std (per channel, in [0, 1] units; ImageNet: "
            "(0.485, 0.456, 0.406) / (0.229, 0.224, 0.225)), or dataset.normalize='unit' or 'none'"
        )
    mean, std = np.asarray(cfg.mean, np.float32), np.asarray(cfg.std, np.float32)
    if mean.shape != (channels,) or std.shape != (channels,):
        raise ValueError(f"dataset.mean/std must have {channels} values (one per channel), got {cfg.mean} / {cfg.std}")
    return mean, std


def normalization_table(mean, std) -> np.ndarray:
    """``(256 * C,)`` float32: ``(v / 255 - mean[c]) / std[c]`` at ``v * C + c`` for every uint8
    value ``v`` and channel ``c``, computed as the in-memory path computes its inputs."""
    values = np.arange(256, dtype=np.float32)[:, None] / 255.0
    return ((values - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32).reshape(-1)


def normalize(images, table):
    """uint8 images (``..., C``) to float32 by a lookup in ``normalization_table``: runs on the
    device, inside the jitted step (the host sends uint8). A lookup rather than arithmetic:
    XLA turns division by a constant into multiplication by its reciprocal, one rounding off
    the host's float path; the table gives the same bits on every backend."""
    channels = images.shape[-1]
    return jnp.take(jnp.asarray(table), images.astype(jnp.int32) * channels + jnp.arange(channels, dtype=jnp.int32))


class StreamSplit:
    """One split read by index: ``read(indices, step, positions)`` decodes and preprocesses
    examples. Picklable: worker processes receive it whole and open the files themselves.

    ``train=True`` applies ``cfg.augment`` ('random_resized_crop', 'flip'), seeded by
    ``(seed, step, position)``; ``train=False`` (or no augmentation) resizes and center-crops.
    """

    def __init__(self, cfg, split: str, train: bool, *, seed: int = 0, source=None, num_classes: int | None = None):
        if not cfg.resize or len(cfg.resize) != 2:
            raise ValueError(f"streaming needs dataset.resize=(height, width), got {cfg.resize}")
        self.name, self.split, self.train, self.seed = cfg.name, split, train, seed
        self.image_key, self.label_key = cfg.image_key, cfg.label_key
        self.size = tuple(int(s) for s in cfg.resize)
        self.eval_resize = int(cfg.stream.eval_resize)
        augment = set(cfg.augment) if train else set()
        unknown = augment - set(AUGMENTATIONS)
        if unknown:
            raise ValueError(f"unknown streaming dataset.augment {sorted(unknown)}; valid: {', '.join(AUGMENTATIONS)}")
        self.crop, self.flip = "random_resized_crop" in augment, "flip" in augment
        info = tfds.builder(cfg.name, data_dir=cfg.data_dir).info
        feature = info.features[cfg.image_key]
        self.channels = int(feature.shape[-1] or 3)
        label = info.features[cfg.label_key]
        self.num_classes = num_classes if num_classes is not None else label.num_classes
        self.class_names = tuple(getattr(label, "names", None) or ())
        self.mean, self.std = normalization(cfg, self.channels)
        self.source = source if source is not None else open_source(cfg, split)
        self.num_workers = int(cfg.stream.num_workers)
        if len(self.source) == 0:
            raise ValueError(f"dataset {cfg.name!r} split {split!r} is empty")

    @property
    def num_examples(self) -> int:
        return len(self.source)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.size, self.channels)

    def example(self, image, step: int, position: int) -> np.ndarray:
        """One encoded image preprocessed (uint8 HWC): a pure function of the arguments."""
        if self.train and self.crop:
            rng = np.random.default_rng((self.seed, step, position))
            return preprocess_train(image, rng, self.size, channels=self.channels, flip=self.flip)
        out = preprocess_eval(image, self.size, self.eval_resize, channels=self.channels)
        if self.train and self.flip and np.random.default_rng((self.seed, step, position)).random() < 0.5:
            out = out[:, ::-1]
        return out

    def read(self, indices, step: int = 0, positions=None, mask=None) -> dict[str, np.ndarray]:
        """The examples at ``indices``: ``{'inputs': uint8 (R, H, W, C), 'labels': int32 (R,)}``.
        ``positions``: their positions in the global batch, which seed their augmentation
        (default ``0..R-1``); rows where ``mask`` is 0 (evaluation padding) are zeros, not read."""
        indices = np.asarray(indices, np.int64)
        positions = np.arange(len(indices)) if positions is None else np.asarray(positions)
        keep = np.ones(len(indices), bool) if mask is None else np.asarray(mask) > 0
        images = np.zeros((len(indices), *self.input_shape), np.uint8)
        labels = np.zeros(len(indices), np.int32)
        for row in np.flatnonzero(keep):
            index = int(indices[row])
            try:
                record = self.source[index]
                images[row] = self.example(record[self.image_key], step, int(positions[row]))
                labels[row] = record[self.label_key]
            except Exception as e:  # name the example: the traceback comes from a worker process
                raise ValueError(f"dataset {self.name!r} split {self.split!r}: example {index} (step {step}) "
                                 f"cannot be read and preprocessed: {type(e).__name__}: {e}") from e
        bad = keep & ((labels < 0) | (labels >= self.num_classes))
        if bad.any():
            raise ValueError(f"split {self.split!r} has labels outside [0, {self.num_classes}), e.g. {labels[bad][:5].tolist()}")
        return {"inputs": images, "labels": labels}


@dataclasses.dataclass(frozen=True, eq=False)
class TrainRows:
    """Step ``s`` -> ``rows`` of its global batch of ``batch_size`` (``train_indices``), read
    and augmented: what one process feeds its devices. Pure and picklable (runs in workers)."""

    split: StreamSplit
    batch_size: int
    rows: np.ndarray  # positions in the global batch, ascending

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        indices = train_indices(self.split.seed, step, self.batch_size, self.split.num_examples)
        return self.split.read(indices[self.rows], step, self.rows)


@dataclasses.dataclass(frozen=True, eq=False)
class EvalRows:
    """An ``eval_batches`` batch ``(indices, mask)`` -> its ``rows`` read, with their mask."""

    split: StreamSplit
    rows: np.ndarray

    def __call__(self, batch: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
        indices, mask = (np.asarray(a)[self.rows] for a in batch)
        return {**self.split.read(indices, 0, self.rows, mask), "mask": mask}


def _exit_with(sentinel) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def _worker_init(index: int, count: int) -> None:
    """In each worker process, once started: a session of its own (a Ctrl-C or a signal to the
    job's process group reaches only the training process, which stops its workers), SIGINT
    ignored, and exit when the training process dies."""
    del index, count
    if hasattr(os, "setsid"):
        os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True, name="jaxclf-parent-watch").start()


def _grain_profiling_flag_default() -> None:
    """Outside an absl app (a script, pytest) grain <= 0.2.18 reads its worker-profiling flag
    before flags are parsed and raises (google/grain#1355, fixed upstream after 0.2.18): mark
    that one flag as given, at its default (False), when flags are unparsed."""
    from absl import flags

    name = "grain_enable_multiprocess_worker_profiling"
    if name in flags.FLAGS and not flags.FLAGS.is_parsed():
        flags.FLAGS[name].present = True


def stream(make: Callable[[T], Any], items: Sequence[T], num_workers: int, *, what: str) -> Iterator[Any]:
    """``make(item)`` for each item, in order, built by ``num_workers`` worker processes (0: here).

    A generator: closing it (or its end) stops the workers. An error in ``make``, or a worker's
    death, is raised here as :class:`StreamError` naming ``what`` was being read. ``make``
    returns a dict of arrays.
    """
    import grain  # here: its import costs every in-memory run a second for nothing

    ds = grain.MapDataset.source(items).map(make).to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    if num_workers:
        _grain_profiling_flag_default()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers), worker_init_fn=_worker_init)
    iterator = iter(ds)
    try:
        while (out := _next(iterator, what)) is not None:
            yield out
    finally:
        iterator.close()


def _next(iterator, what: str) -> dict[str, np.ndarray] | None:
    """The next element as plain arrays, or None at the end. Copied out of grain's shared
    memory, so that the segment is freed at once (a device buffer aliasing it would keep it)."""
    try:
        return {k: np.array(v) for k, v in next(iterator).items()}
    except StopIteration:
        return None
    except Exception as e:
        raise StreamError(f"reading {what} failed: {e}") from e


@dataclasses.dataclass(frozen=True)
class StreamDataset:
    """The streaming counterpart of :class:`jaxclf.data.Dataset`: ``train`` (augmented) and the
    evaluation ``splits``, read on demand. Batches are uint8 on the host; ``input_dtype`` is
    the model's (float32, after :func:`normalize` on the device)."""

    name: str
    train: StreamSplit
    splits: dict[str, StreamSplit]
    num_classes: int
    class_names: tuple[str, ...]
    mean: Any
    std: Any
    input_shape: tuple[int, ...]
    input_dtype: Any = np.float32
    preprocessing: dict = dataclasses.field(default_factory=dict)


def check_config(cfg) -> None:
    """Raises ValueError for dataset settings the streaming path cannot honour."""
    if cfg.name == "image_folder":
        raise ValueError("dataset.in_memory=False reads TFDS ArrayRecord datasets; image folders load in memory")
    if not cfg.resize or len(cfg.resize) != 2:
        raise ValueError(f"streaming (dataset.in_memory=False) needs dataset.resize=(height, width), got {cfg.resize}")
    if cfg.stream.eval_resize and cfg.stream.eval_resize < max(cfg.resize):
        raise ValueError(f"dataset.stream.eval_resize={cfg.stream.eval_resize} is smaller than the crop dataset.resize={tuple(cfg.resize)}")
    unsupported = {"pad": cfg.pad, "sequence_view": cfg.sequence_view, "keep_classes": cfg.keep_classes,
                   "examples_per_class": cfg.examples_per_class}
    set_keys = [k for k, v in unsupported.items() if v]
    if set_keys:
        raise ValueError(f"dataset.{', dataset.'.join(set_keys)} are in-memory options; streaming does not support them")
    unknown = set(cfg.augment) - set(AUGMENTATIONS)
    if unknown:
        raise ValueError(f"unknown streaming dataset.augment {sorted(unknown)}; valid: {', '.join(AUGMENTATIONS)}")
    if cfg.stream.num_workers < 0:
        raise ValueError(f"dataset.stream.num_workers must be >= 0 (worker processes; 0: decode in the training process), got {cfg.stream.num_workers}")
    if cfg.normalize == "standardize" and (cfg.get("mean") is None or cfg.get("std") is None):
        normalization(cfg, 3)  # raises the explanation


def load(cfg, *, seed: int = 0) -> StreamDataset:
    """The configured train split (augmented, seeded) and evaluation splits, opened for streaming."""
    check_config(cfg)
    train = StreamSplit(cfg, cfg.train_split, True, seed=seed)
    splits = {name: StreamSplit(cfg, name, False, seed=seed) for name in dict.fromkeys(cfg.eval_splits)}
    return StreamDataset(cfg.name, train, splits, train.num_classes, train.class_names, train.mean, train.std, train.input_shape)
