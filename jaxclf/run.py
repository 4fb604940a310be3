"""One run from a config, what ``python -m jaxclf.main`` does: train it
(:func:`jaxclf.train.loop.train`), then evaluate its final state and write its results
(:func:`jaxclf.results.write`). Import :func:`train_and_evaluate` to run configs from your own
code."""

from __future__ import annotations

from jaxclf import results
from jaxclf.train import loop


def train_and_evaluate(config, workdir, **options) -> dict:
    """Trains (or resumes) ``config`` in ``workdir`` and writes its results; returns the final
    metrics per split (``{}`` when ``stop_at`` ended the run early). ``options``: those of
    :func:`jaxclf.train.loop.train` (devices, stop_at, allow_config_change, fresh_if_unreadable)."""
    trained = loop.train(config, workdir, **options)
    if trained is None:
        return {}
    try:
        return results.write(trained)
    except BaseException:
        loop.wait_for_devices()  # see its docstring: an exit with steps in flight can hang
        raise
