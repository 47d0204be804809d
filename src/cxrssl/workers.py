"""The one parallel map of cxrssl: decoding, checking and rendering phantoms on all cores.

:func:`parallel_map` is ``map(function, items)`` in a pool of worker processes, with
the results in the items' order. Items go to the workers in chunks (fewer round
trips), and at most one block of results is held at a time, so a consumer slower than
the workers (a cache writer) does not make results pile up in memory.

Shutdown is always clean: when the map ends early (an exception in a worker or in the
consumer, Ctrl-C, or SIGTERM from a scheduler or ``kill``), the workers are terminated
before the exception goes on, never left running. SIGTERM is turned into
``SystemExit(143)`` while a pool runs (the exit status a shell gives a process killed by
it), so every ``finally`` on the way out runs too. On Linux a worker also gets SIGTERM
when the process that started it dies, even by SIGKILL.

``function`` must be a module-level function (it is pickled to the workers).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
Result = TypeVar("Result")

SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def parallel_map(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int | None = None,
    progress: bool = False,
    desc: str = "work",
    unit: str = "img",
    chunksize: int = 16,
    block: int = 2048,
) -> Iterator[Result]:
    """``map(function, items)`` on ``workers`` processes (default: every core), in order.

    ``items`` go to the workers ``chunksize`` at a time, ``block`` at a time at most in
    flight. Fewer items than two chunks per worker are mapped in this process: a pool
    would cost more than it saves. See the module docstring for the shutdown rules.
    """
    workers = max(1, workers or default_workers())
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress, leave=False)
    try:
        if workers == 1 or len(items) <= 2 * workers * chunksize:
            for item in items:
                yield function(item)
                bar.update()
            return
        with _terminate_on_sigterm(), multiprocessing.Pool(workers, _init_worker, (os.getpid(),)) as pool:
            # leaving the `with` (normally or not) terminates the workers: none outlives the map
            for start in range(0, len(items), block):
                for result in pool.imap(function, items[start : start + block], chunksize):
                    yield result
                    bar.update()
    finally:
        bar.close()


def _init_worker(parent: int) -> None:
    """Ctrl-C and a closed terminal (SIGHUP) are the parent's to handle: it terminates the
    pool. SIGTERM ends a worker at once. (A forked worker inherits the parent's handlers.)"""
    for number in (signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if number is not None:
            signal.signal(number, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        try:  # SIGTERM to this worker when its parent dies, SIGKILL included
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)


class _terminate_on_sigterm:
    """While a pool runs, SIGTERM raises SystemExit(143) in the main thread, so the pool is terminated on the way out.

    Left alone when not in the main thread (signals cannot be handled there) or when the
    process already has its own SIGTERM handler or ignores the signal.
    """

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self.previous = signal.signal(signal.SIGTERM, _raise_exit)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _raise_exit(signum, frame) -> None:
    raise SystemExit(SIGTERM_EXIT_STATUS)
