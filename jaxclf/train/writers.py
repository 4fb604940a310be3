"""Where metrics go: ``metrics.jsonl`` (one object per step and split) and TensorBoard.

Only process 0 writes. On resume, what was logged after the restored step (lines and
TensorBoard events) is dropped, so the files read as if the run had never stopped.
"""

from __future__ import annotations

import json
import struct
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


def _masked_crc32c(data: bytes) -> int:
    # tensorboardX sets CRC32C_SW_MODE in os.environ when imported: imported when a run writes
    # events, not when jaxclf is imported (an import changes nothing in the user's process).
    from tensorboardX.record_writer import masked_crc32c

    return masked_crc32c(data)


def read_records(path: Path) -> tuple[list[bytes], bool]:
    """The complete TFRecord records of an event file (length, masked CRC-32C of the length,
    data, masked CRC-32C of the data), and whether the file held nothing else: reading stops
    at a record cut short by a killed process, or one whose checksums do not match."""
    data = Path(path).read_bytes()
    records, pos = [], 0
    while pos + 12 <= len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        end = pos + 12 + length + 4
        if end > len(data) or struct.unpack_from("<I", data, pos + 8)[0] != _masked_crc32c(header):
            break
        record = data[pos + 12 : end - 4]
        if struct.unpack_from("<I", data, end - 4)[0] != _masked_crc32c(record):
            break
        records.append(record)
        pos = end
    return records, pos == len(data)


def frame_record(record: bytes) -> bytes:
    """One TFRecord record as ``read_records`` reads it (and TensorBoard, and TensorFlow)."""
    header = struct.pack("<Q", len(record))
    return header + struct.pack("<I", _masked_crc32c(header)) + record + struct.pack("<I", _masked_crc32c(record))


def truncate_events_after(directory: Path, step: int) -> None:
    """Drops the TensorBoard events logged after ``step`` from the event files under
    ``directory`` (and a record cut short by a killed process), each file rewritten whole
    and then renamed over the old one."""
    for path in sorted(Path(directory).glob("*/events.out.tfevents.*")):
        records, whole = read_records(path)
        from tensorboardX.proto.event_pb2 import Event

        kept = [r for r in records if Event.FromString(r).step <= step]
        if whole and len(kept) == len(records):
            continue
        tmp = path.parent / "rewriting.tmp"
        tmp.write_bytes(b"".join(frame_record(r) for r in kept))
        tmp.replace(path)


class MetricWriter:
    """Appends scalars to metrics.jsonl and TensorBoard event files under ``workdir``
    (one directory per split), written with tensorboardX: no TensorFlow."""

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
            from tensorboardX import SummaryWriter  # see _masked_crc32c

            self._tb[split] = SummaryWriter(str(self._tb_dir / split))
        return self._tb[split]

    def write(self, step: int, split: str, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split, **{k: float(v) for k, v in scalars.items()}}
        with self.path.open("a") as f:  # strict JSON: an undefined metric (NaN) is null
            f.write(json.dumps(strict(record), allow_nan=False) + "\n")
        writer = self._tensorboard(split)
        for name, value in scalars.items():
            writer.add_scalar(name, float(value), int(step))

    def close(self) -> None:
        for writer in self._tb.values():
            writer.close()
