"""Throughput of the streaming input pipeline (``jaxclf.data.stream``) on ImageNet-like
JPEGs, and the host cores one accelerator would need.

    python -m benchmarks.bench_input [--quick] [--images 256] [--batch 64] [--steps 12]

Data: ``--images`` JPEGs of 500x375 (ImageNet's most common size) made here -- smooth random
colour fields with grain, quality 90, about ImageNet's ~110 KB per image -- written as a TFDS
dataset in ArrayRecord files (a small builder defined below), so reading goes through
``tfds.data_source`` exactly as for ``imagenet2012``.

Pipeline: the training path of a run -- ``TrainRows`` (indices of step s from
``train_indices``, each image decoded by PIL, random-resized crop to 224 + flip seeded by
(seed, s, position), uint8 batches) through ``stream`` with 0 (in this process), 1 and 2
grain worker processes. Throughput counts the images after the first batch (so worker
start-up, reported apart, is excluded) up to the last.

Cores for one accelerator: the rate the accelerator trains at (``--target``, default 6,800
img/s: ResNet-50 bf16 on one H200, measured in DESIGN.md) divided by the images one core
decodes and crops per second of CPU time (the in-process run: every image's work is this
process's CPU time, so the figure holds on a busy machine where wall-clock rates do not). Decoding is per image and
independent, so it scales with cores until memory bandwidth binds; the 2-worker row shows the
scaling this machine gives (it has 2 cores, shared with the training-process side of the
pipeline and anything else running: see the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

NAME = "bench_jpegs"
SIZE = (375, 500)  # height, width
TARGET_IMG_S = 6_800.0  # ResNet-50 bf16, one H200 (DESIGN.md, measured)


def make_jpegs(directory: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` 500x375 JPEGs: upsampled random colour fields plus pixel noise (natural-image
    sizes: flat regions and texture), quality 90."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((SIZE[1], SIZE[0]), Image.BICUBIC), np.float32)
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        path = directory / f"{i:05d}.jpg"
        Image.fromarray(image).save(path, quality=90)
        paths.append(path)
    return paths


def prepare(data_dir: Path, count: int) -> float:
    """Builds the JPEG dataset as ArrayRecord in ``data_dir``; returns the mean JPEG size in bytes."""
    import tensorflow_datasets as tfds

    jpegs = data_dir / "jpegs"
    jpegs.mkdir(parents=True, exist_ok=True)
    paths = make_jpegs(jpegs, count)

    class BenchJpegs(tfds.core.GeneratorBasedBuilder):
        """500x375 JPEGs (made by benchmarks/bench_input.py), 1,000 classes."""

        name = NAME
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(encoding_format="jpeg"), "label": tfds.features.ClassLabel(num_classes=1000)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, path in enumerate(paths):
                yield i, {"image": str(path), "label": i % 1000}

    BenchJpegs(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return float(np.mean([p.stat().st_size for p in paths]))


def dataset_config(data_dir: Path, workers: int):
    from jaxclf import config as config_lib

    c = config_lib.base_config()
    d = c.dataset
    d.name, d.data_dir, d.in_memory = NAME, str(data_dir), False
    d.resize, d.stream.eval_resize = (224, 224), 256
    d.mean, d.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    d.augment = ("random_resized_crop", "flip")
    d.stream.num_workers = workers
    return d


def measure(data_dir: Path, workers: int, batch: int, steps: int) -> dict:
    """Images/s of ``steps`` training batches through ``stream`` with ``workers`` workers."""
    from jaxclf.data import stream

    split = stream.StreamSplit(dataset_config(data_dir, workers), "train", True, seed=0)
    make = stream.TrainRows(split, batch, np.arange(batch))
    t0 = time.perf_counter()
    times, cpu = [], []
    for out in stream.stream(make, range(steps), workers, what="benchmark batches"):
        assert out["inputs"].shape == (batch, 224, 224, 3) and out["inputs"].dtype == np.uint8
        times.append(time.perf_counter())
        cpu.append(time.process_time())
    images = batch * (steps - 1)
    return {"workers": workers, "batch": batch, "steps": steps, "first_batch_s": times[0] - t0,
            "img_s": images / (times[-1] - times[0]), "img_per_cpu_s": images / (cpu[-1] - cpu[0])}


def run(*, quick: bool = False, images: int = 256, batch: int = 64, steps: int = 12, target: float = TARGET_IMG_S,
        log=print) -> list[dict]:
    """One entry per worker count (kind 'input'), the in-process one carrying the core estimate."""
    if quick:
        images, batch, steps = 64, 16, 4
    with tempfile.TemporaryDirectory(prefix="jaxclf-bench-input-") as tmp:
        log(f"[input] making {images} 500x375 JPEGs as ArrayRecord ...")
        jpeg_bytes = prepare(Path(tmp), images)
        rows = []
        for workers in (0, 1, 2):
            r = measure(Path(tmp), workers, batch, steps)
            log(f"[input] {workers} worker(s): {r['img_s']:.0f} img/s (first batch after {r['first_batch_s']:.1f} s)")
            rows.append(r)
    per_core = rows[0]["img_per_cpu_s"]  # in-process: all the work is this process's CPU time
    entries = []
    for r in rows:
        where = "in the training process" if r["workers"] == 0 else f"{r['workers']} worker process{'es' * (r['workers'] > 1)}"
        entries.append({
            "name": f"stream: decode + random-resized crop 224 + flip, {where}", "kind": "input", "units": "images/s",
            "baseline": None, "ours": r["img_s"], "theirs": None, "ratio": None, "target": None, "met": None,
            "workers": r["workers"], "batch": r["batch"], "steps": r["steps"], "first_batch_s": r["first_batch_s"],
            "jpeg_bytes_mean": jpeg_bytes, "images": images, "load_avg_1min": os.getloadavg()[0],
        })
    entries[0]["cores_needed"] = {"target_img_s": target, "img_s_per_core": per_core, "cores": target / per_core}
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--target", type=float, default=TARGET_IMG_S)
    args = parser.parse_args()
    entries = run(quick=args.quick, images=args.images, batch=args.batch, steps=args.steps, target=args.target)
    print(json.dumps(entries, indent=1, default=str))
    need = entries[0]["cores_needed"]
    print(f"one core: {need['img_s_per_core']:.0f} img/s -> {need['cores']:.0f} cores for {need['target_img_s']:,.0f} img/s")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
