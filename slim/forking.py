"""Work done in a forked copy of this process, its output read back through a pipe.

A build is Python work in one process, and its threads take turns on one interpreter lock: work moved to a
thread still waits its turn, and at a lower CPU priority a thread would hold that lock while the scheduler
passes it over. A forked child shares no lock with the build and can run on another core, at any priority.

What a child may do is narrow. A fork copies the calling thread only, so the child must not take a lock
another thread of this process could hold at that moment: no engine call, no import, no logging, and no
garbage collection (it is off in the child); reading files and computing is what it is for. It ignores SIGINT
and SIGTERM (the build decides what an interrupt stops, and ends its children on every way out), and it always
ends with os._exit: the build's own code after the fork never runs twice.
"""
from __future__ import annotations

import contextlib
import gc
import os
import signal
from typing import BinaryIO, Callable


class Child:
    """A forked child writing to `output`'s other end. `end()` kills and reaps it (its output may be left unread)."""

    def __init__(self, pid: int, output: BinaryIO):
        self.pid = pid
        self.output = output
        self._ended = False

    def hurry(self) -> None:
        """Give the child this process's CPU priority back: what it works out is being waited for now. Without
        the privilege to raise a priority it goes on at the one it has."""
        if self._ended:  # reaped: its pid may be another process's by now
            return
        try:
            os.setpriority(os.PRIO_PROCESS, self.pid, os.getpriority(os.PRIO_PROCESS, 0))
        except PermissionError:
            pass

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        os.kill(self.pid, signal.SIGKILL)  # done, or no longer wanted (an exited child keeps its pid until reaped)
        os.waitpid(self.pid, 0)
        self.output.close()


def fork(work: Callable[[BinaryIO], object], niceness: int = 0) -> Child:
    """`work(pipe)` in a forked child, `niceness` added to its CPU priority; OSError when no process can be had.
    What `work` raises ends the child early: its reader then sees the output stop short."""
    parent = os.getpid()
    read_end, write_end = os.pipe()
    # No garbage collection in the child: it would run the finalizers of this process's garbage, and one that
    # takes a lock a thread of ours held at the fork would wait for ever in a child that no longer has the thread.
    collecting = gc.isenabled()
    gc.disable()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    finally:
        if collecting and os.getpid() == parent:
            gc.enable()
    if pid == 0:
        _run(work, read_end, write_end)
    os.close(write_end)
    # Set from here, not by the child itself: a hurry() right after the fork could come before the child's
    # own nice() and be undone by it.
    if niceness:
        with contextlib.suppress(ProcessLookupError):  # done and gone already
            os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, 0) + niceness)
    return Child(pid, os.fdopen(read_end, "rb"))


def _run(work: Callable[[BinaryIO], object], read_end: int, write_end: int) -> None:
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.close(read_end)
        with os.fdopen(write_end, "wb") as output:
            work(output)
    finally:
        os._exit(0)
