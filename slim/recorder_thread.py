"""The shape both trace recorders share: a reader on its own thread that stop ends at once.

The thread polls its sources together with a wake pipe; halting writes to the pipe, so the poll returns at
once instead of at a timeout. An error on the thread is kept and raised in the caller's thread.
"""
from __future__ import annotations

import abc
import os
import select
import threading
import time

from .errors import SlimError


class RecorderThread(abc.ABC):
    """Subclasses set their state, then call `_start()`; `_run()` loops `while not self._woken(poller)`
    over a poller from `_poller()`. Use as a context manager (leaving it stops the thread)."""

    def __init__(self, what: str, thread_name: str, phase: str):
        self._what = what  # "recording {what} failed"
        self._phase = phase
        # time.monotonic() when something new was last recorded (read by the exercise from its thread)
        self._last_news = time.monotonic()
        self._error: Exception | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._guarded, name=thread_name, daemon=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt()

    def set_phase(self, name: str) -> None:
        """Label what is first seen from now on (e.g. with the probe that is running)."""
        self._phase = name

    def last_news(self) -> float:
        """time.monotonic() when the recorder last recorded something new (its start until then)."""
        return self._last_news

    def _noted(self) -> None:
        """Subclasses call this whenever they record something new."""
        self._last_news = time.monotonic()

    def _start(self) -> None:
        self._thread.start()

    @abc.abstractmethod
    def _run(self) -> None:
        """Read until `_woken`, then what is still queued."""

    def _release(self) -> None:
        """Close what the recorder holds besides its thread, once the thread has ended."""

    def _poller(self) -> select.poll:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        return poller

    def _woken(self, poller: select.poll) -> bool:
        """Wait for the next event; True once halting was asked for."""
        return self._ready(poller) is None

    def _ready(self, poller: select.poll) -> set[int] | None:
        """Wait for the next event: the descriptors that have one, None once halting was asked for."""
        ready = {fd for fd, _ in poller.poll()}
        return None if self._wake_r in ready else ready

    def _stopped(self) -> None:
        """Halt, and raise in the caller's thread what failed on the recorder's."""
        self._halt()
        if self._error is not None:
            raise SlimError(f"recording {self._what} failed: {self._error}") from self._error

    def _halt(self) -> None:
        if self._wake_w < 0:
            return
        os.write(self._wake_w, b"\0")
        self._thread.join()
        self._release()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_w = -1

    def _guarded(self) -> None:
        try:
            self._run()
        except Exception as error:  # handed to the caller's thread by _stopped()
            self._error = error
