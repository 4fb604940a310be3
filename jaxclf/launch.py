"""Cluster launchers: writes (and optionally submits) a SLURM batch script for a run or sweep.

    python -m jaxclf.launch slurm --config=configs/X.py[:arg] --workdir=runs/X \
        [--sweep=optim.lr=0.1,0.01 ...] [--config.KEY=V ...] --nodes=1 --gpus_per_node=8 \
        [--partition=gpu --time=24:00:00 --setup='source .venv/bin/activate'] [--submit]

* ``--nodes=1``: one job-array task per sweep point, each a single process that sees the
  node's GPUs (a data-parallel mesh over them); no ``jax.distributed`` needed.
* ``--nodes=N > 1``: each point is one N-node job (an array of them for a sweep) started by
  ``srun`` with one task per GPU and ``--distributed``, so ``jax.distributed.initialize()``
  reads SLURM's environment (coordinator, process count and id, local GPU).

Every task is ``python -m jaxclf.main`` in ``WORKDIR/<point name>``: re-submitting resumes.
SLURM sends SIGTERM two minutes before the time limit; the run checkpoints and exits 75,
and the script re-queues the job, which resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from jaxclf import sweep as sweep_lib

EXIT_PREEMPTED = 75  # jaxclf.main's exit code after a SIGTERM checkpoint


@dataclasses.dataclass(frozen=True)
class Slurm:
    """The resources of one point's job."""

    nodes: int = 1
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    partition: str = ""
    time: str = "24:00:00"
    job_name: str = "jaxclf"
    max_concurrent: int = 0  # 0: no limit on simultaneously running array tasks
    python: str = "python"
    setup: tuple[str, ...] = ()  # shell lines before the run (modules, venv)
    sbatch_args: tuple[str, ...] = ()  # extra '#SBATCH' options, e.g. '--account=abc'

    @property
    def distributed(self) -> bool:
        return self.nodes > 1

    @property
    def tasks_per_node(self) -> int:
        """One process per GPU across nodes (jax.distributed maps SLURM_LOCALID to a GPU)."""
        return max(self.gpus_per_node, 1) if self.distributed else 1


def _directives(res: Slurm, root: Path, num_points: int) -> list[str]:
    lines = [
        f"--job-name={res.job_name}",
        f"--nodes={res.nodes}",
        f"--ntasks-per-node={res.tasks_per_node}",
        f"--cpus-per-task={res.cpus_per_task}",
        f"--time={res.time}",
        f"--output={root}/slurm-%A_%a.out" if num_points > 1 else f"--output={root}/slurm-%j.out",
        "--signal=B:TERM@120",
        "--requeue",
    ]
    if res.gpus_per_node:
        lines.insert(3, f"--gpus-per-node={res.gpus_per_node}")
    if res.partition:
        lines.append(f"--partition={res.partition}")
    if num_points > 1:
        lines.append(f"--array=0-{num_points - 1}" + (f"%{res.max_concurrent}" if res.max_concurrent else ""))
    return ["#SBATCH " + d for d in lines + list(res.sbatch_args)]


def sbatch_script(config_arg: str, root: Path, sweep: sweep_lib.Sweep, overrides: Sequence[str], res: Slurm) -> str:
    """The batch script: point i of the sweep runs in array task i (or alone)."""
    names = [sweep_lib.point_name(p) for p in sweep.points]
    args = [" ".join(f"--config.{k}={sweep_lib.format_value(v)}" for k, v in p.items()) for p in sweep.points]
    main = [res.python, "-m", "jaxclf.main", f"--config={config_arg}", *overrides]
    run = (
        ("srun --kill-on-bad-exit=1 " if res.distributed else "srun ")
        + " ".join(shlex.quote(a) for a in main)
        + f' --workdir={shlex.quote(str(root))}/"$NAME" $POINT_ARGS'
        + (" --distributed" if res.distributed else "")
    )
    lines = [
        "#!/bin/bash",
        *_directives(res, root, len(names)),
        "set -uo pipefail",
        *res.setup,
        "NAMES=(" + " ".join(shlex.quote(n) for n in names) + ")",
        "ARGS=(" + " ".join(shlex.quote(a) for a in args) + ")",
        "I=${SLURM_ARRAY_TASK_ID:-0}",
        'NAME=${NAMES[$I]}',
        'POINT_ARGS=${ARGS[$I]}',
        'echo "jaxclf point $I: $NAME on $SLURM_JOB_NUM_NODES node(s)"',
        run + " &",  # in the background, so the batch shell can receive SLURM's SIGTERM
        "PID=$!",
        "trap 'kill -TERM $PID' TERM",
        "wait $PID; RC=$?",
        "if [ $RC -gt 128 ]; then wait $PID; RC=$?; fi  # woken by the trap: wait for the checkpoint",
        f"if [ $RC -eq {EXIT_PREEMPTED} ]; then",
        '  scontrol requeue "${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}${SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}"',
        "fi",
        "exit $RC",
    ]
    return "\n".join(lines) + "\n"


def submit(script: Path) -> str:
    """Submits with sbatch; returns its output (the job id)."""
    out = subprocess.run(["sbatch", str(script)], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    return dict(
        config=config_flags.DEFINE_config_file("config", None, "Config file (get_config, optional get_sweep).", lock_config=True),
        workdir=flags.DEFINE_string("workdir", None, "Root directory (one sub-directory per point)."),
        sweep=flags.DEFINE_multi_string("sweep", [], "KEY=V1,V2,...: adds or replaces a sweep axis."),
        nodes=flags.DEFINE_integer("nodes", 1, "Nodes per point (> 1: one multi-node jax.distributed job)."),
        gpus_per_node=flags.DEFINE_integer("gpus_per_node", 1, "GPUs per node (0: CPU nodes)."),
        cpus_per_task=flags.DEFINE_integer("cpus_per_task", 8, "CPUs per task."),
        partition=flags.DEFINE_string("partition", "", "SLURM partition."),
        time=flags.DEFINE_string("time", "24:00:00", "Time limit per job (re-queued on expiry)."),
        job_name=flags.DEFINE_string("job_name", "jaxclf", "SLURM job name."),
        max_concurrent=flags.DEFINE_integer("max_concurrent", 0, "Array tasks at once (0: no limit)."),
        python=flags.DEFINE_string("python", "python", "Python interpreter on the nodes."),
        setup=flags.DEFINE_multi_string("setup", [], "Shell line run before training (repeatable)."),
        sbatch_arg=flags.DEFINE_multi_string("sbatch_arg", [], "Extra #SBATCH option, e.g. --account=abc."),
        script=flags.DEFINE_string("script", None, "Where to write the script (default WORKDIR/launch.sbatch)."),
        submit=flags.DEFINE_bool("submit", False, "Submit the script with sbatch."),
    )


def main(argv) -> None:
    from absl import app

    if argv[1:] != ["slurm"]:
        raise app.UsageError("usage: python -m jaxclf.launch slurm --config=FILE --workdir=DIR [...]")
    from jaxclf import config as config_lib

    f = {k: v.value for k, v in _FLAGS.items()}
    config_lib.validate(f["config"])
    path, arg = _split(sweep_lib.raw_config_arg(sys.argv))
    try:
        sweep = sweep_lib.build(f["config"], sweep_lib.load_sweep(path, arg), f["sweep"])
    except (KeyError, TypeError, ValueError) as e:
        sys.exit(f"error: {e.args[0] if isinstance(e, KeyError) else e}")
    config_arg = str(Path(path).absolute()) + (f":{arg}" if arg else "")  # jobs may start elsewhere
    res = Slurm(f["nodes"], f["gpus_per_node"], f["cpus_per_task"], f["partition"], f["time"], f["job_name"],
                f["max_concurrent"], f["python"], tuple(f["setup"]), tuple(f["sbatch_arg"]))
    root = Path(f["workdir"]).absolute()
    root.mkdir(parents=True, exist_ok=True)
    script = Path(f["script"] or root / "launch.sbatch")
    script.write_text(sbatch_script(config_arg, root, sweep, sweep_lib.forwarded_overrides(sys.argv[1:]), res))
    print(f"wrote {script} ({len(sweep)} point(s), {res.nodes} node(s) x {res.gpus_per_node} GPU(s) each)")
    if f["submit"]:
        print(submit(script))
    print(f"then: python -m jaxclf.sweep --config={config_arg} --workdir={root} [same --sweep/--config flags] --summary_only")


def _split(config_arg: str) -> tuple[str, str | None]:
    path, _, arg = config_arg.partition(":")
    return path, arg or None


def cli() -> None:
    from absl import app, flags

    global _FLAGS
    _FLAGS = _define_flags()
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)


if __name__ == "__main__":
    from jaxclf.launch import cli as _cli

    _cli()
