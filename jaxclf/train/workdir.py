"""The run directory: created and checked writable before any compute, holds config.json."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


class WorkdirError(RuntimeError):
    """The workdir cannot be used (not writable, or a file in the way)."""


def prepare(workdir: str | os.PathLike) -> Path:
    """Creates ``workdir`` if needed and proves it is writable by writing a temp file."""
    path = Path(workdir).expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_check"):
            pass
    except OSError as e:
        raise WorkdirError(f"workdir {str(path)!r} is not usable: {e.strerror or e}") from e
    return path


def write_json(path: Path, obj) -> None:
    """Writes JSON atomically (temp file + rename), so a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
