"""Where metrics go: ``metrics.jsonl`` (one object per step and split) and TensorBoard.

Only process 0 writes. On resume, what was logged after the restored step (lines and
TensorBoard events) is dropped, so the files read as if the run had never stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import jax

from jaxclf.train.workdir import strict


def _step_of(line: str) -> int | None:
    """The step of a metrics.jsonl line; None for a line cut short by a killed process."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


def truncate_after(path: Path, step: int) -> None:
    """Drops ``metrics.jsonl`` lines logged after ``step`` (and any half-written line)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if (s := _step_of(line)) is not None and s <= step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def truncate_events_after(directory: Path, step: int) -> None:
    """Drops the TensorBoard events logged after ``step`` from the event files under
    ``directory`` (and a record cut short by a killed process), each file rewritten whole
    and then renamed over the old one."""
    files = sorted(Path(directory).glob("*/events.out.tfevents.*"))
    if not files:
        return
    import tensorflow as tf
    from tensorboard.compat.proto.event_pb2 import Event

    for path in files:
        records = []
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                records.append(record.numpy())
        except tf.errors.DataLossError:  # a truncated last record
            pass
        kept = [r for r in records if Event.FromString(r).step <= step]
        if len(kept) == len(records) and path.stat().st_size == sum(len(r) + 16 for r in records):
            continue
        tmp = path.parent / "rewriting.tmp"
        with tf.io.TFRecordWriter(str(tmp)) as out:
            for record in kept:
                out.write(record)
        tmp.replace(path)


class MetricWriter:
    """Appends scalars to metrics.jsonl and TensorBoard event files under ``workdir``."""

    def __init__(self, workdir: Path, *, resume_step: int = 0):
        self.enabled = jax.process_index() == 0
        self.path = Path(workdir) / "metrics.jsonl"
        self._tb = {}
        self._tb_dir = Path(workdir) / "tensorboard"
        if self.enabled:
            truncate_after(self.path, resume_step)
            truncate_events_after(self._tb_dir, resume_step)

    def _tensorboard(self, split: str):
        if split not in self._tb:
            import tensorflow as tf  # TFDS already needs it; imported only when writing.

            self._tb[split] = tf.summary.create_file_writer(str(self._tb_dir / split))
        return self._tb[split]

    def write(self, step: int, split: str, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split, **{k: float(v) for k, v in scalars.items()}}
        with self.path.open("a") as f:  # strict JSON: an undefined metric (NaN) is null
            f.write(json.dumps(strict(record), allow_nan=False) + "\n")
        import tensorflow as tf

        with self._tensorboard(split).as_default(step=int(step)):
            for name, value in scalars.items():
                tf.summary.scalar(name, float(value))

    def close(self) -> None:
        for writer in self._tb.values():
            writer.flush()
            writer.close()
