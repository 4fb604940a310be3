"""The streaming input path (dataset.in_memory=False): ArrayRecord random access, host
preprocessing that is a pure function of (seed, step, position), exact resume, exact eval."""

import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxclf import config as config_lib
from jaxclf.data import streaming
from jaxclf.train import checkpoint, train_and_evaluate

from conftest import REPO


@pytest.fixture(scope="module")
def array_record_dir(tmp_path_factory):
    """The bundled digits prepared as ArrayRecord (random access) in a data_dir of its own."""
    path = str(tmp_path_factory.mktemp("tfds_array_record"))
    tfds.builder("digits", data_dir=path, file_format="array_record").download_and_prepare()
    return path


def stream_config(data_dir, **dataset):
    c = config_lib.load(os.path.join(REPO, "configs", "lenet5_digits.py"), "smoke")
    c.dataset.data_dir = data_dir
    c.dataset.in_memory = False
    c.dataset.resize = (32, 32)
    c.dataset.eval_resize = 32
    c.dataset.mean, c.dataset.std = (0.3,), (0.4,)
    c.dataset.augment = ("random_resized_crop", "flip")
    c.dataset.num_workers = 2
    for k, v in dataset.items():
        c.dataset[k] = v
    c.train.progress = False
    c.train.batch_size, c.train.eval_batch_size = 16, 64
    c.train.num_steps, c.train.steps_per_call = 6, 2
    c.train.log_every = c.train.eval_every = c.train.checkpoint_every = 3
    c.eval.report = False
    return c


def params_of(workdir):
    return checkpoint.load(os.path.join(workdir, "checkpoints"))[1]["state"]["params"]


def test_random_resized_crop_is_deterministic_and_in_bounds():
    for seed in range(300):
        h, w = [(375, 500), (500, 333), (64, 64), (8, 8)][seed % 4]
        box = streaming.random_resized_crop_box(np.random.default_rng(seed), h, w)
        assert box == streaming.random_resized_crop_box(np.random.default_rng(seed), h, w)
        top, left, ch, cw = box
        assert 0 < ch and 0 < cw and 0 <= top and top + ch <= h and 0 <= left and left + cw <= w
        if (ch, cw) != (h, w):  # not the fallback: the area and aspect ratio are in range
            assert ch * cw <= h * w
            assert 3 / 4 - 0.2 <= cw / ch <= 4 / 3 + 0.2  # rounding to whole pixels
    # A 1x100 strip admits no crop in ten tries: torchvision's fallback, a centred 1x1.
    assert streaming.random_resized_crop_box(np.random.default_rng(0), 1, 100) == (0, 49, 1, 1)
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = streaming.preprocess_train(image, np.random.default_rng(5), (24, 24))
    np.testing.assert_array_equal(out, streaming.preprocess_train(image, np.random.default_rng(5), (24, 24)))
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8


def test_eval_resizes_the_shorter_side_then_center_crops():
    image = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    assert streaming.preprocess_eval(image, (224, 224), 256).shape == (224, 224, 3)
    assert streaming.preprocess_eval(image, (64, 64), 0).shape == (64, 64, 3)  # whole image resized
    # No resize needed: the crop is the exact centre of the image.
    square = image[:256, :256]
    np.testing.assert_array_equal(streaming.preprocess_eval(square, (224, 224), 256), square[16:240, 16:240])
    assert streaming.center_crop_box(256, 341, (224, 224)) == (16, 58, 224, 224)


def test_batch_of_step_depends_only_on_seed_step_and_indices(array_record_dir):
    cfg = stream_config(array_record_dir).dataset
    a = streaming.StreamSplit(cfg, "train", True, seed=3)
    idx = np.arange(10, 26)
    first = a.batch(idx, step=7)
    for s in range(3):  # other batches in between change nothing
        a.batch(np.arange(16) + s, step=s)
    cfg.num_workers = 1  # nor does the thread count
    b = streaming.StreamSplit(cfg, "train", True, seed=3)
    again = b.batch(idx, step=7)
    np.testing.assert_array_equal(first["inputs"], again["inputs"])
    np.testing.assert_array_equal(first["labels"], again["labels"])
    assert first["inputs"].shape == (16, 32, 32, 1) and first["inputs"].dtype == np.float32
    assert first["labels"].dtype == np.int32
    assert not np.array_equal(first["inputs"], a.batch(idx, step=8)["inputs"])  # fresh crops per step
    a.close()
    b.close()


def test_streaming_resume_is_bitwise_identical(array_record_dir, tmp_path):
    c = stream_config(array_record_dir)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    expected = train_and_evaluate(c, whole, devices=jax.devices()[:1])
    assert train_and_evaluate(c, parts, devices=jax.devices()[:1], stop_at=4) == {}
    assert train_and_evaluate(c, parts, devices=jax.devices()[:1]) == expected
    jax.tree.map(np.testing.assert_array_equal, params_of(whole), params_of(parts))
    assert (whole / "metrics.jsonl").read_text() == (parts / "metrics.jsonl").read_text()


def test_streaming_and_in_memory_agree_without_augmentation(array_record_dir, tfds_dir, tmp_path):
    """Same data, native 8x8 size (so no resampling: PIL rounds resized images to uint8, the
    in-memory path resizes float arrays), no augmentation: the same eval metrics, every one of
    the 450 test images counted once (64-image batches, the last one padded and masked)."""
    c = stream_config(array_record_dir, resize=(8, 8), eval_resize=8, augment=())
    c.model.name = "mlp"
    mem = c.copy_and_resolve_references()
    mem.dataset.data_dir, mem.dataset.in_memory, mem.dataset.eval_resize, mem.dataset.resize = tfds_dir, True, 0, None
    streamed = train_and_evaluate(c, tmp_path / "stream", devices=jax.devices()[:1])
    in_memory = train_and_evaluate(mem, tmp_path / "memory", devices=jax.devices()[:1])
    assert streamed == in_memory
    jax.tree.map(np.testing.assert_array_equal, params_of(tmp_path / "stream"), params_of(tmp_path / "memory"))


def test_tfrecord_dataset_and_missing_stats_are_clear_errors(tmp_path):
    tfds.builder("digits", data_dir=str(tmp_path)).download_and_prepare()  # tfrecord, TFDS's default
    c = stream_config(str(tmp_path))
    with pytest.raises(ValueError, match="file_format='array_record'"):
        streaming.StreamSplit(c.dataset, "train", True)
    c.dataset.mean = None
    with pytest.raises(ValueError, match="dataset.mean and dataset.std"):
        config_lib.validate(c)
    c = stream_config(str(tmp_path), augment=("random_crop",))
    with pytest.raises(ValueError, match="random_resized_crop"):
        config_lib.validate(c)
