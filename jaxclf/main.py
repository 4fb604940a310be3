"""Trains and evaluates a config: ``python -m jaxclf.main --config=configs/X.py --workdir=DIR``.

Overrides: ``--config.optim.lr=0.01``; variants: ``--config=configs/X.py:smoke``. Every key,
its value and what it does: ``python -m jaxclf.main --print_config`` (the defaults) or
``--config=configs/X.py [overrides] --print_config`` (that config); no workdir needed. Re-running
the same command on a workdir resumes it. For several processes (hosts), pass
``--coordinator=HOST:PORT --num_processes=N --process_id=I``, or ``--distributed`` to let
``jax.distributed.initialize()`` read SLURM / TPU-pod environment variables.
"""

from __future__ import annotations

import os

# TensorFlow only decodes data here (for TFDS); keep its start-up banners quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import json

from absl import app, flags, logging
from ml_collections import config_flags

from jaxclf import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (get_config); --print_config lists its keys with their docs.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results (required to train).")
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print every key of the config (the default one without --config) with its value and doc, "
    "grouped by section, and exit."
)
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() from the environment.")
_COORDINATOR = flags.DEFINE_string("coordinator", None, "host:port of process 0, for multi-process runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume a workdir whose config.json differs from this config."
)
_FRESH_IF_UNREADABLE = flags.DEFINE_bool(
    "fresh_if_unreadable", False, "Start from scratch if every checkpoint in the workdir is unreadable."
)

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: the scheduler may re-run the same command to resume


def _initialize_distributed() -> None:
    import jax

    if _COORDINATOR.value:
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    elif _DISTRIBUTED.value:
        jax.distributed.initialize()


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from jaxclf import config as config_lib

    if _PRINT_CONFIG.value:
        config = config_lib.base_config() if _CONFIG.value is None else cli.config_value(_CONFIG)
        print(config_lib.describe(config), end="")
        return
    missing = [f"--{name}" for name, holder in (("config", _CONFIG), ("workdir", _WORKDIR)) if holder.value is None]
    if missing:
        cli.fail(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required to train "
                 "(--print_config needs neither)")
    from jaxclf import cpu

    cpu.configure_process()  # before JAX starts its threads
    from jaxclf.run import train_and_evaluate
    from jaxclf.train import checkpoint, preemption, workdir

    if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
        logging.set_verbosity(logging.WARNING)
    config = cli.config_value(_CONFIG)
    config_lib.validate(config)  # before any compute or distributed set-up
    _initialize_distributed()
    try:
        results = train_and_evaluate(
            config,
            _WORKDIR.value,
            allow_config_change=_ALLOW_CONFIG_CHANGE.value,
            fresh_if_unreadable=_FRESH_IF_UNREADABLE.value,
        )
    except preemption.Preempted as e:
        cli.fail(str(e), EXIT_PREEMPTED)
    except (workdir.WorkdirError, checkpoint.NoValidCheckpointError) as e:
        if cli.debugging():
            raise
        cli.fail(cli.message(e))
    logging.info("results: %s", results)
    print(json.dumps(workdir.strict(results), indent=2, sort_keys=True, allow_nan=False))
    print(f"run files in {os.path.abspath(_WORKDIR.value)}")


if __name__ == "__main__":
    app.run(cli.guarded(main), flags_parser=cli.parse_flags)
