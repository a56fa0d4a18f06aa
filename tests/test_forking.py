"""slim/forking.py: work in a forked child, read back through a pipe (real forks)."""
import gc
import os
import time

import pytest

from slim import forking


def test_the_child_runs_at_its_priority_and_collects_no_garbage():
    child = forking.fork(lambda out: (out.write(f"{os.getpid()} {gc.isenabled()}".encode()), out.flush(),
                                      time.sleep(3600)), niceness=5)
    assert os.getpriority(os.PRIO_PROCESS, child.pid) == os.nice(0) + 5  # set as fork() returned
    pid, collecting = child.output.read(len(f"{child.pid} False")).decode().split()
    child.end()
    assert int(pid) == child.pid != os.getpid()
    assert collecting == "False" and gc.isenabled()  # off in the child only


def test_ending_a_child_that_is_still_at_work_kills_and_reaps_it():
    child = forking.fork(lambda out: time.sleep(3600))  # were it not killed, end() would wait that long
    child.end()
    child.end()  # twice is once
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)
    assert child.output.closed


def test_what_the_work_raises_stops_the_output_short():
    def fails(out):
        out.write(b"half")
        raise RuntimeError("the work failed")

    child = forking.fork(fails)
    assert child.output.read() == b"half"
    child.end()


def test_a_child_hurried_runs_at_this_process_priority():
    child = forking.fork(lambda out: (out.write(b"ready"), out.flush(), time.sleep(3600)), niceness=19)
    assert child.output.read(5) == b"ready"
    child.hurry()
    assert os.getpriority(os.PRIO_PROCESS, child.pid) == os.getpriority(os.PRIO_PROCESS, 0)
    child.end()
    child.hurry()  # reaped, its pid free for another process: left alone
