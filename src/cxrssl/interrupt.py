"""Stopping on a signal: SIGTERM, SIGINT and SIGHUP end a verb cleanly, at its next step.

``kill``, ``docker stop``, ``systemctl stop`` and SLURM (before a time limit or a
preemption) send SIGTERM; a closed terminal sends SIGHUP; Ctrl-C sends SIGINT. Each
becomes :class:`Interrupted` raised in the main thread, so the same code paths as any
error run on the way out: locks are released, temporary files removed (every write is
atomic), a pretraining run's status becomes ``interrupted``, and worker processes are
ended. Resumable verbs continue from their last saved state with the same command.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = tuple(s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)) if s is not None)


class Interrupted(BaseException):
    """A stop asked for by a signal (a BaseException, as KeyboardInterrupt is: never swallowed by ``except Exception``)."""

    def __init__(self, number: int):
        self.signal = int(number)
        super().__init__(f"stopped by {signal.Signals(number).name}")


def _raise(number, frame) -> None:
    for other in SIGNALS:  # a second signal while cleaning up must not cut the clean-up short
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(number)


@contextmanager
def stopping_on_signals() -> Iterator[None]:
    """Within the block, the signals raise :class:`Interrupted`; on the way out of an
    interrupted block, worker processes are ended. Outside the main thread: no change."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in SIGNALS}
    for number in SIGNALS:
        signal.signal(number, _raise)
    try:
        yield
    except (Interrupted, KeyboardInterrupt):
        end_worker_processes()
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def end_worker_processes() -> None:
    """Terminate the worker processes this process started (multiprocessing pools, joblib's loky workers)."""
    import multiprocessing
    import sys

    loky = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(loky, "_executor", None)
    if executor is not None:  # joblib's reusable executor keeps its workers alive between calls: end them
        executor.shutdown(wait=False, kill_workers=True)
    for child in multiprocessing.active_children():
        child.terminate()
