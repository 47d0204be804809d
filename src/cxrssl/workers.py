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
when the process that started it dies, even by SIGKILL (with the ``fork`` start method,
Linux's default before Python 3.14; under ``spawn`` or ``forkserver`` a worker ends after
its current item, when its pipe closes). A worker that dies by itself (the
kernel's out-of-memory killer, a crash in a decoder) ends the map with
:class:`WorkerDied` naming its exit status, instead of a wait that never ends.

The pool is cxrssl's own, a pipe to each worker: ``multiprocessing.Pool`` shares one task
queue lock among its workers and restarts workers while it terminates, and a worker
started then could wait forever on the lock a terminated one held, so that leaving the
map hung (seen once in CI).

``function`` must be a module-level function (it is pickled to the workers).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import traceback
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


class WorkerDied(RuntimeError):
    """A worker process ended while it had work (killed, out of memory, or crashed)."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as text (the ``__cause__`` of the one raised here)."""

    def __str__(self) -> str:
        return self.args[0]


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
    flight or waiting to be yielded. Fewer items than two chunks per worker are mapped in
    this process: a pool would cost more than it saves. See the module docstring for the
    shutdown rules.
    """
    workers = max(1, workers or default_workers())
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress, leave=False)
    try:
        if workers == 1 or len(items) <= 2 * workers * chunksize:
            for item in items:
                yield function(item)
                bar.update()
            return
        with _terminate_on_sigterm(), _Pool(function, workers) as pool:
            for result in pool.map(items, chunksize, block):
                yield result
                bar.update()
    finally:
        bar.close()


class _Pool:
    """``workers`` processes, each with its own pipe: a chunk out, its results (or its error) back.

    Leaving the ``with`` ends every worker: after a finished map each is told to stop and
    joined; otherwise (or when one does not stop) it is terminated, then killed.
    """

    def __init__(self, function: Callable, workers: int):
        self.function, self.workers = function, workers
        self.processes: list = []
        self.pipes: list = []
        self.finished = False

    def __enter__(self) -> _Pool:
        # A forked worker is this process's child; under spawn or forkserver (Python 3.14's
        # default on Linux) its parent is another process, so only its pipe says we are gone.
        parent = os.getpid() if multiprocessing.get_start_method() == "fork" else None
        try:
            for _ in range(self.workers):
                ours, theirs = multiprocessing.Pipe()
                process = multiprocessing.Process(target=_serve, args=(self.function, theirs, parent), daemon=True)
                process.start()
                theirs.close()
                self.processes.append(process)
                self.pipes.append(ours)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def map(self, items: Sequence, chunksize: int, block: int) -> Iterator:
        starts = iter(range(0, len(items), chunksize))  # chunks go out in order, so the next to yield is always out or back
        done: dict[int, list | BaseException] = {}  # chunk start -> its results (or its error), until yielded
        busy: dict[int, int] = {}  # worker -> the start of the chunk it has
        position = 0  # the next item to yield
        dead: set[int] = set()  # workers that ended by themselves: their chunk's error is in `done`

        def give_out_work() -> None:
            while len(busy) + len(dead) < self.workers:
                held = chunksize * (len(done) + len(busy))
                if held and held + chunksize > block:  # at most `block` items out or waiting
                    return
                start = next(starts, None)
                if start is None:
                    return
                worker = next(w for w in range(self.workers) if w not in busy and w not in dead)
                self.pipes[worker].send(list(items[start : start + chunksize]))
                busy[worker] = start

        give_out_work()
        while busy or done:
            if position in done:
                results = done.pop(position)
                if isinstance(results, BaseException):  # raised in its place, after the items before it
                    raise results
                position += len(results)
                give_out_work()
                yield from results
                continue
            ready = set(multiprocessing.connection.wait([self.pipes[w] for w in busy] + [self.processes[w].sentinel for w in busy]))
            for worker in [w for w in busy if {self.pipes[w], self.processes[w].sentinel} & ready]:
                done[busy.pop(worker)] = self._receive(worker)
                if not self.processes[worker].is_alive():
                    dead.add(worker)
            give_out_work()
        self.finished = True

    def _receive(self, worker: int) -> list | BaseException:
        """The results of a worker's chunk, or its error (WorkerDied when it ended without answering)."""
        name = getattr(self.function, "__name__", repr(self.function))  # for the messages
        try:
            ok, payload = self.pipes[worker].recv()
        except (EOFError, OSError):
            process = self.processes[worker]
            process.join(1.0)
            return WorkerDied(
                f"a worker process (pid {process.pid}) ended while mapping {name}, exit status {process.exitcode}"
                " (a negative status is the signal that killed it; -9 is often the out-of-memory killer: use fewer workers)"
            )
        except Exception as error:  # an answer that does not unpickle here (an exception class with other arguments)
            return RuntimeError(f"a worker's answer for {name} could not be read: {type(error).__name__}: {error}")
        if not ok:
            error, trace = payload
            error.__cause__ = RemoteTraceback(trace)
            return error
        return payload

    def __exit__(self, *exc_info) -> None:
        if self.finished:
            for pipe in self.pipes:
                try:
                    pipe.send(None)
                except OSError:
                    pass
            for process in self.processes:
                process.join(5.0)
        for process in self.processes:
            if process.exitcode is None:
                process.terminate()
        for process in self.processes:
            process.join(5.0)
            if process.exitcode is None:
                process.kill()
                process.join()
        for pipe in self.pipes:
            pipe.close()


def _serve(function: Callable, pipe, parent: int | None) -> None:
    """A worker: map each chunk that comes down the pipe, until None (or the pipe closes)."""
    _init_worker(parent)
    while True:
        try:
            chunk = pipe.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        try:
            message = (True, [function(item) for item in chunk])
        except Exception as error:
            message = (False, (error, traceback.format_exc()))
        try:
            pipe.send(message)
        except Exception as error:  # the error or a result would not pickle
            pipe.send((False, (RuntimeError(f"{type(error).__name__}: {error}"), traceback.format_exc())))


def _init_worker(parent: int | None) -> None:
    """Ctrl-C and a closed terminal (SIGHUP) are the parent's to handle: it terminates the
    pool. SIGTERM ends a worker at once. (A forked worker inherits the parent's handlers.)

    ``parent``: the pid of the process that forked this worker, which it must not outlive;
    None when the worker was not forked by the map's process (spawn, forkserver): it then
    ends when its pipe closes, after the item it is mapping."""
    for number in (signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if number is not None:
            signal.signal(number, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if parent is not None and sys.platform.startswith("linux"):
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
