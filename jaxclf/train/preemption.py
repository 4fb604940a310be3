"""Preemption: SIGTERM or SIGINT asks the loop to checkpoint the current step and exit.

The signal handler only sets a flag; the loop checks it between steps (a host-side read,
no device synchronisation), saves, and raises :class:`Preempted`, which the command line
turns into a non-zero exit. The re-run resumes from that checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class Preempted(RuntimeError):
    """The run was asked to stop; its state at ``step`` is checkpointed."""

    def __init__(self, step: int, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint saved, re-run to resume")
        self.step, self.signum = step, signum


class StopRequest:
    """Set by a signal handler; read by the loop."""

    def __init__(self):
        self._event = threading.Event()
        self.signum = 0

    def set(self, signum: int) -> None:
        self.signum = signum
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()


@contextlib.contextmanager
def catch_signals(signums=(signal.SIGTERM, signal.SIGINT)):
    """Yields a StopRequest set by the given signals; previous handlers restored on exit.

    Outside the main thread (where Python cannot install handlers) it yields a request that
    is never set.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, lambda signum, frame: request.set(signum)) for s in signums}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
