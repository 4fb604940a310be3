"""The run directory: created and checked writable before any compute, holds config.json."""

from __future__ import annotations

import json
import math
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


def strict(obj):
    """``obj`` as strict JSON values: tuples become lists, NaN and infinities None (JSON has
    no NaN: a metric that is undefined, e.g. ROC AUC of a split with one class, is null)."""
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: Path, obj) -> None:
    """Writes strict JSON (see :func:`strict`) atomically (temp file + rename), so a crash
    never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(strict(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")
    os.replace(tmp, path)


class ConfigMismatchError(WorkdirError):
    """The workdir holds a run with a different config."""


def _flatten(tree, prefix=""):
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    out = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return out


_ABSENT = "<absent>"


def config_diff(old: dict, new: dict, defaults: dict | None = None) -> list[str]:
    """Lines ``key: old -> new`` for every dotted key whose value differs.

    A key the old config lacks is no difference when the new value is its default (a run
    written before jaxclf grew that key behaved as the default does).
    """
    a, b, d = _flatten(old), _flatten(new), _flatten(defaults or {})
    lines = []
    for k in sorted(a.keys() | b.keys()):
        va, vb = a.get(k, _ABSENT), b.get(k, _ABSENT)
        if va != vb and not (va == _ABSENT and k in d and d[k] == vb):
            lines.append(f"{k}: {va!r} -> {vb!r}")
    return lines


def check_config(path: Path, config: dict, *, defaults: dict | None = None, allow_change: bool = False) -> None:
    """Refuses (listing the differences) a workdir whose config.json holds another config.
    ``defaults`` (the default config as a dict): keys a stored config lacks that hold them
    are no difference (see :func:`config_diff`)."""
    config = strict(config)  # as stored
    target = path / "config.json"
    if target.exists() and not allow_change:
        diff = config_diff(json.loads(target.read_text()), config, strict(defaults or {}))
        if diff:
            raise ConfigMismatchError(
                f"workdir {str(path)!r} holds a run with a different config:\n  "
                + "\n  ".join(diff)
                + "\nuse another workdir, or allow the change (--allow_config_change) to resume with it"
            )


def record_config(path: Path, config: dict, *, defaults: dict | None = None, allow_change: bool = False) -> None:
    """Writes config.json after :func:`check_config`. The loop calls it once the data are read
    and the model initialised, so a run that failed before leaves no config.json."""
    check_config(path, config, defaults=defaults, allow_change=allow_change)
    write_json(path / "config.json", config)
