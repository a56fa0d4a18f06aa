"""A list of items worked through from both ends: this thread from the last one down, a second Python
process (`python -m WORKER`) from the first one up, until they meet.

Parsing holds the GIL, so a thread would not put the machine's second core to work; a process does. The
process costs about a tenth of a second to start (it imports only the scanner, pyscan.py), so only long
lists are shared, and this thread has begun from its end meanwhile: neither side waits for the other, and
if the process cannot start, fails or is slower than expected, this thread does its share too. Either way
each item's result is `work(item)`, which the worker computes with the same code.

The worker reads a pickled list of the items from stdin and writes one line per item, in order.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence, TypeVar

Item = TypeVar("Item")
SHARED_FROM = 32  # items: fewer are worked through here, sooner than a process starts
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding `slim`, as this process imports it


def from_both_ends(items: Sequence[Item], work: Callable[[Item], str], worker: str) -> list[str]:
    """[work(item) for item in items], shared with the worker module when the list is long."""
    if len(items) < SHARED_FROM:
        return [work(item) for item in items]
    try:
        helper = _Worker(worker, items)
    except OSError:  # no second process to be had (out of processes or memory): all of it here
        return [work(item) for item in items]
    results: list[str] = [""] * len(items)
    with helper:
        index = len(items) - 1
        while index >= 0 and helper.done() <= index:
            results[index] = work(items[index])
            index -= 1
        theirs = helper.first(index + 1)
    results[: len(theirs)] = theirs
    for late in range(len(theirs), index + 1):  # the worker failed before these
        results[late] = work(items[late])
    return results


class _Worker:
    def __init__(self, module: str, items: Sequence[object]):
        # -P and PYTHONPATH: the worker runs this very slimtrace, whatever the working directory holds.
        paths = [str(_PACKAGE_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        self._process = subprocess.Popen(
            [sys.executable, "-P", "-m", module],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        )
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._finished = False
        self._threads = [
            threading.Thread(target=self._write, args=(pickle.dumps(list(items)),), name="slimtrace-parse-feed"),
            threading.Thread(target=self._read, name="slimtrace-parse-read"),
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> _Worker:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._process.kill()  # done with it: what it would do next is done here already
        self._process.wait()
        for thread in self._threads:
            thread.join()

    def done(self) -> int:
        """How many items, from the first on, the worker has done."""
        return len(self._lines)

    def first(self, count: int) -> list[str]:
        """The worker's results for the first `count` items, waiting for them; fewer if it failed first."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._lines) >= count or self._finished)
        return self._lines[:count]

    def _write(self, data: bytes) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(data)
            self._process.stdin.close()
        except OSError:  # it was ended before it read everything
            pass

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if not line.endswith(b"\n"):
                break  # cut off as it was ended
            with self._changed:
                self._lines.append(line[:-1].decode())
                self._changed.notify_all()
        self._process.stdout.close()
        with self._changed:
            self._finished = True
            self._changed.notify_all()
