"""slim.ownership.raise_interrupt: Ctrl-C and SIGTERM become a KeyboardInterrupt in the main thread, except
where raising would leave a lock taken for ever (real signals, real locks)."""
import signal
import sys
import threading
import time

import pytest

from slim import ownership
from slim.ownership import deferred_interrupts, raise_interrupt


class _Lock:
    """Takes a real lock, then lets `on_taken` run in the frame that took it, as a pending signal handler runs
    when Condition.__enter__'s call to acquire returns."""

    def __init__(self, on_taken):
        self.lock = threading.Lock()
        self.acquire, self.release = self.lock.acquire, self.lock.release  # what a Condition wants of a lock
        self._on_taken = on_taken

    def __enter__(self):
        self.lock.acquire()
        self._on_taken(sys._getframe(1))  # Condition.__enter__'s frame
        return True

    def __exit__(self, *exc):
        self.lock.release()


def test_an_interrupt_inside_a_conditions_enter_comes_back_once_the_with_block_holds_the_lock():
    lock = _Lock(lambda frame: raise_interrupt(signal.SIGINT, frame))
    condition = threading.Condition(lock)
    with pytest.raises(KeyboardInterrupt):
        with condition:
            time.sleep(5)  # the interrupt comes back within a millisecond, here, where the block releases the lock
    assert not lock.lock.locked()


def test_an_interrupt_delivered_again_inside_a_block_that_holds_interrupts_waits_for_its_end(monkeypatch):
    monkeypatch.setattr(ownership, "RETRY_INTERRUPT", 0.05)  # time to enter the block below first
    lock = _Lock(lambda frame: raise_interrupt(signal.SIGINT, frame))
    held_at_the_end = []
    with pytest.raises(KeyboardInterrupt):
        with threading.Condition(lock):
            with deferred_interrupts() as held:
                time.sleep(0.2)  # the interrupt comes back meanwhile, and is held
                held_at_the_end.append(list(held.received))
    assert held_at_the_end == [[signal.SIGALRM]] and not lock.lock.locked()


def test_anywhere_else_the_interrupt_is_raised_at_once():
    with pytest.raises(KeyboardInterrupt):
        raise_interrupt(signal.SIGTERM, sys._getframe())
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
