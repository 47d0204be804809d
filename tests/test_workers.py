import os
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from cxrssl.workers import SIGTERM_EXIT_STATUS, RemoteTraceback, WorkerDied, parallel_map

REPO = Path(__file__).resolve().parents[1]


def square(x):
    return x * x


def pid_of(x):
    return os.getpid()


def slow_pid(x):
    time.sleep(0.05)
    return os.getpid()


def stuck_after_four(x):
    time.sleep(0.05 if x < 4 else 60)
    return os.getpid()


def fail_at_seven(x):
    if x == 7:
        raise ValueError("item seven")
    return os.getpid()


def killed_at_five(x):
    if x == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


def a_lock(x):
    import threading

    return threading.Lock()


class NeedsTwo(Exception):
    def __init__(self, what, why):
        super().__init__(f"{what}: {why}")  # pickled with one argument, so it does not unpickle


def fail_strangely(x):
    if x == 3:
        raise NeedsTwo("item three", "odd")
    return x


def touch(path):
    Path(path).touch()
    return path


def gone(pid: int, within: float = 5.0) -> bool:
    """Whether ``pid`` no longer runs (reaped or never a child of ours), waiting up to ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie child of this process counts as gone once reaped
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        status = Path(f"/proc/{pid}/status")
        if status.is_file() and "zombie" in status.read_text():
            return True
        time.sleep(0.05)
    return False


def test_results_come_in_order_over_several_blocks_and_chunks():
    items = list(range(150))
    assert list(parallel_map(square, items, workers=2, chunksize=3, block=40)) == [x * x for x in items]


def test_work_too_small_for_a_pool_runs_in_this_process():
    assert set(parallel_map(pid_of, list(range(10)), workers=2, chunksize=16)) == {os.getpid()}
    assert set(parallel_map(pid_of, list(range(40)), workers=1)) == {os.getpid()}


def test_a_failing_item_raises_here_and_the_workers_are_terminated():
    pids = []
    with pytest.raises(ValueError, match="item seven"):
        for pid in parallel_map(fail_at_seven, list(range(40)), workers=2, chunksize=1):
            pids.append(pid)
    assert len(pids) == 7 and os.getpid() not in pids
    assert all(gone(pid) for pid in set(pids))


def test_a_failing_item_never_hangs_the_shutdown_over_many_maps():
    # multiprocessing.Pool once hung here: it restarted a worker while terminating, which then waited on a lock forever
    for _ in range(25):
        with pytest.raises(ValueError, match="item seven") as raised:
            list(parallel_map(fail_at_seven, list(range(40)), workers=2, chunksize=1))
        assert isinstance(raised.value.__cause__, RemoteTraceback) and "fail_at_seven" in str(raised.value.__cause__)


def test_a_worker_that_dies_ends_the_map_with_its_exit_status_and_the_others_end():
    pids = []
    with pytest.raises(WorkerDied, match=r"ended while mapping killed_at_five, exit status -9"):
        for pid in parallel_map(killed_at_five, list(range(40)), workers=2, chunksize=1):
            pids.append(pid)
    assert len(pids) == 5 and all(gone(pid) for pid in set(pids))


def test_a_result_that_cannot_be_sent_back_is_an_error_naming_why():
    with pytest.raises(RuntimeError, match="cannot pickle"):
        list(parallel_map(a_lock, list(range(40)), workers=2, chunksize=1))


def test_an_error_that_does_not_unpickle_here_is_still_an_error_naming_it():
    with pytest.raises(RuntimeError, match="answer for fail_strangely could not be read: TypeError"):
        list(parallel_map(fail_strangely, list(range(40)), workers=2, chunksize=1))


def test_no_more_than_a_block_of_items_is_taken_ahead_of_the_consumer(tmp_path):
    paths = [str(tmp_path / f"{i:04d}") for i in range(300)]
    block, chunksize = 24, 4
    for consumed, path in enumerate(parallel_map(touch, paths, workers=2, chunksize=chunksize, block=block), start=1):
        assert path == paths[consumed - 1]
        time.sleep(0.002)  # a consumer slower than the workers
        assert len(list(tmp_path.iterdir())) <= consumed + block + chunksize
    assert len(list(tmp_path.iterdir())) == 300


def test_a_consumer_that_stops_early_terminates_the_workers():
    seen = set()
    with closing(parallel_map(slow_pid, list(range(200)), workers=2, chunksize=1)) as results:
        for pid in results:
            seen.add(pid)
            if len(seen) == 2:
                break
    assert all(gone(pid) for pid in seen)


# Python's Ctrl-C handler, as in a shell: a child of an xdist worker inherits SIGINT ignored,
# and then ran on through the signal (exit 1 on the closed pipe, or a timeout).
SCRIPT = """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
from tests.test_workers import slow_pid
from cxrssl.workers import parallel_map
for pid in parallel_map(slow_pid, list(range(2000)), workers=2, chunksize=1):
    print(pid, flush=True)
"""
# A program with its own SIGTERM handler (the command line's raises Interrupted) keeps it.
OWN_HANDLER = (
    """
import signal, sys
def stop(number, frame):
    raise SystemExit(7)
signal.signal(signal.SIGTERM, stop)
"""
    + SCRIPT
)


def _run_until_two_workers_answered(script=SCRIPT):
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    pids = set()
    while len(pids) < 2:
        line = child.stdout.readline()
        assert line, "the map ended before both workers answered"
        pids.add(int(line))
    return child, pids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_ends_the_map_and_its_workers(sig):
    child, pids = _run_until_two_workers_answered()
    child.send_signal(sig)
    child.communicate(timeout=30)
    returncode = child.returncode
    # SIGTERM: SystemExit(143); Ctrl-C: KeyboardInterrupt, with which Python ends as killed by SIGINT
    assert returncode == (SIGTERM_EXIT_STATUS if sig == signal.SIGTERM else -signal.SIGINT)
    assert all(gone(pid) for pid in pids)


def test_a_sigterm_handler_of_the_program_is_kept_and_the_workers_still_end():
    child, pids = _run_until_two_workers_answered(OWN_HANDLER)
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=30)
    assert child.returncode == 7
    assert all(gone(pid) for pid in pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_workers_do_not_outlive_a_parent_killed_outright():
    # The workers are in a 60 s item when the parent dies: only the parent-death signal ends them in time.
    child, pids = _run_until_two_workers_answered(SCRIPT.replace("slow_pid", "stuck_after_four"))
    child.kill()
    child.stdout.close()
    child.wait(timeout=30)
    assert all(gone(pid, within=3.0) for pid in pids)


START_METHODS = """
import multiprocessing, sys
from tests.test_workers import fail_at_seven, square
from cxrssl.workers import parallel_map

if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    assert list(parallel_map(square, list(range(300)), workers=2, chunksize=4)) == [x * x for x in range(300)]
    try:
        list(parallel_map(fail_at_seven, list(range(100)), workers=2, chunksize=1))
    except ValueError as error:
        print("raised", error)
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_the_map_works_under_every_start_method(method, tmp_path):
    # forkserver is Python 3.14's default on Linux: a worker's parent is then the server, not this process
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"{method} is not a start method here")
    script = tmp_path / "start_method.py"
    script.write_text(START_METHODS)
    done = subprocess.run(
        [sys.executable, str(script), method], cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "raised item seven"
