"""Hyper-parameter sweeps: every point is a normal run in its own sub-workdir.

    python -m jaxclf.sweep --config=configs/sweep_lenet5_digits.py --workdir=runs/sweep \
        [--sweep=optim.lr=0.001,0.003 ...] [--config.train.num_steps=500] [--parallel=2] \
        [--vmap] [--metric=test/accuracy --mode=max]

A config file defines its sweep beside ``get_config`` with ``get_sweep(arg=None)``, built from
:func:`product`, :func:`zip_` and plain ``{key: values}`` dicts (no string mini-language)::

    def get_sweep(arg=None):
        return product(zip_({"optim.lr": [1e-3, 1e-2], "optim.weight_decay": [0.0, 1e-4]}),
                       {"seed": [0, 1, 2]})

``--sweep=KEY=V1,V2`` (repeatable) adds an axis or replaces the file's values of KEY; values
are parsed with the type of the config field. ``--config.KEY=V`` applies to every point. Each
point runs as ``python -m jaxclf.main`` (same checkpoints, metrics and resume) in
``WORKDIR/<key=value,...>``; a re-run skips finished points and resumes interrupted ones.
``--vmap`` trains all points in one jitted program when they differ only in seed and
optimizer hyper-parameters (:mod:`jaxclf.train.vmap_sweep`). The sweep ends by writing
``summary.csv``, ``summary.md`` (best first) and one plot per swept key.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import ast
import contextlib
import copy
import csv
import dataclasses
import difflib
import importlib.util
import itertools
import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from jaxclf import cli as cli_lib

Point = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """An ordered list of points, each a ``{dotted_key: value}`` assignment."""

    points: tuple[Point, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for p in self.points for k in p))

    def __len__(self) -> int:
        return len(self.points)


def _as_sweep(part: Sweep | Mapping[str, Sequence]) -> Sweep:
    """A dict of value lists means the product of its keys."""
    if isinstance(part, Sweep):
        return part
    if not isinstance(part, Mapping):
        raise TypeError(f"a sweep part is a Sweep or a {{key: values}} dict, got {type(part).__name__}")
    return product(*(Sweep(tuple({k: v} for v in _values(k, vs))) for k, vs in part.items()))


def _values(key: str, values) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"sweep values of {key!r} must be a list, got {values!r}")
    return list(values)


def product(*parts: Sweep | Mapping[str, Sequence]) -> Sweep:
    """Every combination of the parts' points (the first part varies slowest)."""
    sweeps = [_as_sweep(p) for p in parts]
    points = [dict(kv for p in combo for kv in p.items()) for combo in itertools.product(*(s.points for s in sweeps))]
    return Sweep(tuple(points))


def zip_(spec: Mapping[str, Sequence]) -> Sweep:
    """Values taken together: point i sets every key to its i-th value (equal lengths)."""
    columns = {k: _values(k, v) for k, v in spec.items()}
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"zip_ needs lists of equal length, got {lengths}")
    n = next(iter(lengths.values()), 0)
    return Sweep(tuple({k: v[i] for k, v in columns.items()} for i in range(n)))


def override(sweep: Sweep, key: str, values: Sequence) -> Sweep:
    """``sweep`` with ``key`` removed from every point, times the new axis ``key``."""
    order = {k: i for i, k in enumerate(dict.fromkeys(sweep.keys + (key,)))}  # a replaced key keeps its place
    rest = [{k: v for k, v in p.items() if k != key} for p in sweep.points]
    unique = [dict(items) for items in dict.fromkeys(tuple(p.items()) for p in rest)]
    points = product(Sweep(tuple(unique)), {key: values}).points
    return Sweep(tuple(dict(sorted(p.items(), key=lambda kv: order[kv[0]])) for p in points))


# --- values, names, configs ---------------------------------------------------------------


def _field(config, key: str):
    """(parent ConfigDict, leaf name) of a dotted key; unknown keys suggest near ones."""
    parts, node = key.split("."), config
    for i, part in enumerate(parts):
        known = list(node.keys()) if hasattr(node, "keys") else []
        if part not in known:
            prefix = ".".join(parts[:i] + [""])
            hint = difflib.get_close_matches(".".join(parts[: i + 1]), [prefix + k for k in known], n=1)
            raise KeyError(f"unknown config key {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
        if i < len(parts) - 1:
            node = node[part]
    return node, parts[-1]


def parse_value(config, key: str, text: str):
    """``text`` as a value of the config field ``key`` (int, float, bool, str; None allowed)."""
    parent, leaf = _field(config, key)
    field_type = parent.get_type(leaf)
    if text in ("None", "none") and field_type is not bool:
        return None
    if field_type is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{key} takes bool values (true/false); got {text!r}")
        return text.lower() in ("true", "1")
    if field_type in (int, float):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (field_type is int and not isinstance(value, int)):
            raise ValueError(f"{key} takes {field_type.__name__} values; got {text!r}")
        return field_type(value)
    if field_type is str:
        return text
    raise ValueError(f"--sweep cannot parse values of {key} (a {field_type.__name__}); define it in get_sweep")


def parse_axis(config, spec: str) -> tuple[str, list]:
    """``'optim.lr=0.1,0.01'`` -> ``('optim.lr', [0.1, 0.01])``, typed by the config."""
    key, sep, values = spec.partition("=")
    if not sep or not values:
        raise ValueError(f"--sweep wants KEY=V1,V2,..., got {spec!r}")
    return key, [parse_value(config, key, v) for v in values.split(",")]


def apply_point(config, point: Point):
    """A copy of ``config`` with the point's values (type-checked by the ConfigDict)."""
    config = copy.deepcopy(config)
    for key, value in point.items():
        parent, leaf = _field(config, key)
        with parent.ignore_type() if value is None else contextlib.nullcontext():
            parent[leaf] = value
    return config


def format_value(value) -> str:
    """Short, exact text of a value: 0.001 -> '0.001', 1e-05 -> '1e-05', True -> 'True'."""
    return repr(value) if isinstance(value, float) else str(value)


def point_name(point: Point) -> str:
    """The sub-workdir name: ``optim.lr=0.01,seed=1`` with unsafe characters replaced."""
    text = ",".join(f"{k}={format_value(v)}" for k, v in point.items()) or "default"
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)[:200]


def load_sweep(path: str, arg: str | None = None) -> Sweep:
    """The config file's ``get_sweep(arg)``, or a single empty point if it has none."""
    spec = importlib.util.spec_from_file_location("_jaxclf_sweep", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        return Sweep(({},))
    return _as_sweep(module.get_sweep(arg) if arg is not None else module.get_sweep())


def build(config, file_sweep: Sweep, axes: Sequence[str]) -> Sweep:
    """The file's sweep with the command line's axes added/replaced, checked against config."""
    sweep = file_sweep
    for spec in axes:
        key, values = parse_axis(config, spec)
        sweep = override(sweep, key, values)
    from jaxclf import config as config_lib

    for point in sweep.points:  # unknown keys, wrong types and bad names fail before any run
        config_lib.validate(apply_point(config, point))
    names = [point_name(p) for p in sweep.points]
    if len(set(names)) != len(names):
        raise ValueError(f"sweep points repeat: {names}")
    return sweep


def expected_config(config, point: Point) -> dict:
    """The config.json a finished run of this point holds."""
    return json.loads(json.dumps(apply_point(config, point).to_dict()))


def is_finished(workdir: Path, config, point: Point) -> bool:
    """results.json exists and config.json is this point's config."""
    try:
        recorded = json.loads((workdir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (workdir / "results.json").exists() and recorded == expected_config(config, point)


# --- running ------------------------------------------------------------------------------


def command(config_arg: str, workdir: Path, point: Point, overrides: Sequence[str]) -> list[str]:
    """The ``python -m jaxclf.main`` command line of one point."""
    point_flags = [f"--config.{k}={format_value(v)}" for k, v in point.items()]
    return [sys.executable, "-m", "jaxclf.main", f"--config={config_arg}", f"--workdir={workdir}", *overrides, *point_flags]


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_processes(commands: Mapping[str, tuple[list[str], Path]], parallel: int, *, log=print) -> dict[str, int]:
    """Runs ``{name: (argv, workdir)}`` with at most ``parallel`` at once; returns exit codes.

    Each child's stdout/stderr go to ``workdir/sweep_{stdout,stderr}.txt``.
    """
    pending, running, codes = list(commands.items()), {}, {}
    try:
        while pending or running:
            while pending and len(running) < max(parallel, 1):
                name, (argv, workdir) = pending.pop(0)
                workdir.mkdir(parents=True, exist_ok=True)
                out, err = open(workdir / "sweep_stdout.txt", "w"), open(workdir / "sweep_stderr.txt", "w")
                running[name] = (subprocess.Popen(argv, stdout=out, stderr=err), out, err)
                log(f"[sweep] started {name}")
            time.sleep(0.2)
            for name, (proc, out, err) in list(running.items()):
                if proc.poll() is not None:
                    out.close(), err.close()
                    codes[name] = proc.returncode
                    del running[name]
                    log(f"[sweep] {'finished' if proc.returncode == 0 else f'FAILED ({proc.returncode})'} {name}")
    finally:  # interrupted: the running points checkpoint (SIGTERM) and stop; a re-run resumes them
        for proc, out, err in running.values():
            proc.terminate()
        for proc, out, err in running.values():
            proc.wait()
            out.close(), err.close()
    return codes


# --- summary ------------------------------------------------------------------------------


def collect(root: Path, sweep: Sweep, failed: Mapping[str, int] | None = None) -> list[dict]:
    """One row per point: name, status, swept values + ``split/metric`` results (None if
    missing). Status: 'finished' (results.json exists), 'failed (exit N)' for the ``failed``
    points' exit codes, else 'no results'."""
    rows, failed = [], failed or {}
    for point in sweep.points:
        name = point_name(point)
        path = root / name / "results.json"
        results = json.loads(path.read_text()) if path.exists() else {}
        flat = {f"{split}/{m}": v for split, ms in results.items() for m, v in ms.items()}
        status = "finished" if path.exists() else (f"failed (exit {failed[name]})" if name in failed else "no results")
        rows.append({"name": name, "status": status, **point, **flat})
    return rows


def ranked(rows: list[dict], metric: str, mode: str) -> list[dict]:
    """Best first; rows without the metric (failed points) last."""
    def key(row):
        v = row.get(metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return (1, 0.0)
        return (0, -v if mode == "max" else v)

    return sorted(rows, key=key)


def _columns(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_columns(rows))
        writer.writeheader()
        writer.writerows(rows)


def _cell(v) -> str:
    return "" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def markdown(rows: list[dict]) -> str:
    cols = _columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def plot(root: Path, rows: list[dict], keys: Sequence[str], metric: str) -> list[Path]:
    """One PNG per swept key: the metric against the key, one marker per point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key in keys:
        pts = [(r[key], r[metric]) for r in rows if r.get(metric) is not None and key in r]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        xs = [x for x, _ in pts]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        ax.plot(xs if numeric else [str(x) for x in xs], [y for _, y in pts], "o", alpha=0.7)
        if numeric and len(set(xs)) > 2 and min(xs) > 0 and max(xs) / min(xs) >= 100:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = root / f"plot_{re.sub(r'[^A-Za-z0-9._-]', '_', key)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def summarize(root: Path, sweep: Sweep, metric: str = "test/accuracy", mode: str = "max",
              failed: Mapping[str, int] | None = None) -> list[dict]:
    """Writes summary.csv, summary.md and the plots; returns the rows, best first. Points
    without results are named under the table (with their exit codes from ``failed``)."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    rows = ranked(collect(root, sweep, failed), metric, mode)
    write_csv(root / "summary.csv", rows)
    title = f"# Sweep: {len(rows)} points, best {metric} ({mode}) first\n\n"
    missing = [f"- {r['name']}: {r['status']} (see {r['name']}/sweep_stderr.txt)" for r in rows if r["status"] != "finished"]
    notes = f"\n{len(missing)} point(s) without results:\n" + "\n".join(missing) + "\n" if missing else ""
    (root / "summary.md").write_text(title + markdown(rows) + notes)
    plot(root, rows, sweep.keys, metric)
    return rows


# --- command line -------------------------------------------------------------------------


def prepare_data(config) -> None:
    """Prepares the dataset once, so that parallel points do not race to prepare it."""
    from jaxclf import data

    data.prepare(config.dataset)


def forwarded_overrides(argv: Sequence[str]) -> list[str]:
    """The ``--config.KEY=V`` flags of the command line, for every point's run."""
    out, it = [], iter(argv)
    for a in it:
        if a.startswith("--config."):
            out.append(a if "=" in a else f"{a}={next(it)}")
    return out


def run(config, config_arg: str, root: Path, sweep: Sweep, overrides: Sequence[str], *,
        parallel: int = 1, vmap: bool = False, metric: str = "test/accuracy", mode: str = "max", log=print) -> int:
    """Runs the unfinished points, writes the summary; returns the number of failed points."""
    root.mkdir(parents=True, exist_ok=True)
    todo = [p for p in sweep.points if not is_finished(root / point_name(p), config, p)]
    log(f"[sweep] {len(sweep)} points, {len(sweep) - len(todo)} already finished, {len(todo)} to run")
    failed = {}
    if todo and vmap:
        from jaxclf.train import vmap_sweep

        vmap_sweep.run([apply_point(config, p) for p in todo], [root / point_name(p) for p in todo])
    elif todo:
        if parallel > 1 and len(todo) > 1:
            prepare_data(config)
        commands = {point_name(p): (command(config_arg, root / point_name(p), p, overrides), root / point_name(p)) for p in todo}
        codes = run_processes(commands, parallel, log=log)
        failed = {name: code for name, code in codes.items() if code != 0}
    for name, code in failed.items():
        log(f"[sweep] point {name} failed (exit {code}); stderr tail:\n{tail(root / name / 'sweep_stderr.txt')}")
    rows = summarize(root, sweep, metric, mode, failed)
    log((root / "summary.md").read_text())
    if rows and metric not in rows[0]:
        log(f"[sweep] no point has {metric!r}; columns: {', '.join(_columns(rows))}")
    return len(failed)


def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    return dict(
        config=config_flags.DEFINE_config_file("config", None, "Config file (get_config, optional get_sweep).", lock_config=True),
        workdir=flags.DEFINE_string("workdir", None, "Root directory: one sub-directory per point."),
        sweep=flags.DEFINE_multi_string("sweep", [], "KEY=V1,V2,...: adds or replaces an axis (repeatable)."),
        parallel=flags.DEFINE_integer("parallel", 1, "Points run at once (subprocesses)."),
        vmap=flags.DEFINE_bool("vmap", False, "Train all points in one vmapped program (seed/optimizer axes only)."),
        metric=flags.DEFINE_string("metric", "test/accuracy", "split/metric that ranks the points."),
        summary_only=flags.DEFINE_bool("summary_only", False, "Run nothing; summarize the finished points (e.g. after a cluster job)."),
        mode=flags.DEFINE_enum("mode", "max", ["max", "min"], "Whether larger or smaller metric is better."),
    )


def main(argv) -> None:
    from absl import app

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from jaxclf import cpu

    cpu.configure_process()  # before JAX starts its threads (the vmapped sweep trains in this process)
    from jaxclf import config as config_lib

    config = cli_lib.config_value(_FLAGS["config"])
    config_lib.validate(config)
    config_arg = raw_config_arg(sys.argv)
    path, _, arg = config_arg.partition(":")
    try:  # a bad axis, key, value or name: a one-line error before any run
        sweep = build(config, load_sweep(path, arg or None), _FLAGS["sweep"].value)
        if _FLAGS["vmap"].value:
            from jaxclf.train import vmap_sweep

            vmap_sweep.check_vmappable(sweep.keys)
    except (KeyError, TypeError, ValueError) as e:
        if cli_lib.debugging():
            raise
        cli_lib.fail(cli_lib.message(e))
    root = Path(_FLAGS["workdir"].value).absolute()
    if _FLAGS["summary_only"].value:
        summarize(root, sweep, _FLAGS["metric"].value, _FLAGS["mode"].value)
        print((root / "summary.md").read_text())
        return
    failures = run(
        config, config_arg, root, sweep, forwarded_overrides(sys.argv[1:]),
        parallel=_FLAGS["parallel"].value, vmap=_FLAGS["vmap"].value, metric=_FLAGS["metric"].value, mode=_FLAGS["mode"].value,
    )
    if failures:
        print(f"[sweep] {failures} point(s) failed", file=sys.stderr)
        sys.exit(1)


def raw_config_arg(argv: Sequence[str]) -> str:
    """``FILE[:arg]`` as given to --config (forwarded verbatim to every point)."""
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config":
            return argv[i + 1]
    raise ValueError("--config=FILE is required")


def cli() -> None:
    """Defines the flags and runs :func:`main` (from the imported module, not ``__main__``,
    so config files that import ``jaxclf.sweep`` share its classes)."""
    from absl import app, flags

    global _FLAGS
    _FLAGS = _define_flags()
    flags.mark_flags_as_required(["config", "workdir"])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # stops the points too
    app.run(cli_lib.guarded(main), flags_parser=cli_lib.parse_flags)


if __name__ == "__main__":
    from jaxclf.sweep import cli as _cli

    _cli()
