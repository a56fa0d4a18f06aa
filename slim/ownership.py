"""What slimtrace creates, and how any later run can tell whose it is.

Every container, temp dir and work image carries the identity of the run that made it: its pid and the
kernel's start time of that pid (so a recycled pid is not mistaken for the run). The engine and the file
system hold these names and labels, not this process: when a run dies without cleaning up (SIGKILL, power
loss), the next run or `slim gc` sees that its process is gone and removes what it left.

Images are owned through a tag the engine holds: the slimmed image is loaded already tagged
`slimtrace-work:<run>-<random>`, and cleanup removes that tag, never an image id. The engine deletes the
image only when that was its last tag, so an image another build or the user has tagged is never removed.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import itertools
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Callable, Iterator

from .engine import ContainerSpec, Engine

RUN_LABEL = "io.slimtrace.run"  # "<pid>-<start time>" of the slimtrace process that created the container
WORK_REPOSITORY = "slimtrace-work"
_PREFIX = "slimtrace-"
_RUN_TOKEN = re.compile(r"(\d+)-(\d+)")
_TEMP_NAME = re.compile(rf"{_PREFIX}({_RUN_TOKEN.pattern})-")


@dataclass(frozen=True)
class RunId:
    pid: int
    started: int  # the process's start time in clock ticks after boot (/proc/PID/stat, field 22)

    @property
    def token(self) -> str:
        return f"{self.pid}-{self.started}"

    @classmethod
    def parse(cls, token: str) -> RunId | None:
        match = _RUN_TOKEN.fullmatch(token)
        return cls(int(match[1]), int(match[2])) if match else None

    @classmethod
    def of(cls, pid: int) -> RunId:
        return cls(pid, _start_time(pid) or 0)

    def alive(self) -> bool:
        return _start_time(self.pid) == self.started


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
    return int(stat.rpartition(")")[2].split()[19])


def this_run() -> RunId:
    return RunId.of(os.getpid())


_container_numbers = itertools.count(1)


def enter_temp_dir(cleanup: contextlib.ExitStack, kind: str) -> Path:
    """A temp dir named after this run (so a later run can tell when its owner is gone), removed by `cleanup`.

    Made with interrupts held: a Ctrl-C that lands right after mkdtemp, before `cleanup` owns the directory,
    would leave it behind (likely, not rare: the interrupt is delivered when the main thread gets the GIL
    back after the mkdir, while the index thread holds it).
    """
    with deferred_interrupts():
        made = tempfile.TemporaryDirectory(prefix=f"{_PREFIX}{this_run().token}-{kind}-", ignore_cleanup_errors=True)
        return Path(cleanup.enter_context(made))


def work_tag() -> str:
    """The tag this run's slimmed image is loaded with; removing it is how the run lets go of the image."""
    return f"{WORK_REPOSITORY}:{this_run().token}-{secrets.token_hex(4)}"


# ---------------------------------------------------------------- interrupts


# Where an interrupt must not be raised: a Condition's __enter__ (the lock of every queue.Queue, so of the engine
# client's connection pool, and of every future) has taken its lock when Python runs a pending signal handler
# on its return, and a KeyboardInterrupt raised there leaves the lock taken for ever. Seen once: a build
# interrupted inside the connection pool's get() then hung in its next engine call.
_TAKES_A_LOCK = threading.Condition.__enter__.__code__
RETRY_INTERRUPT = 0.001  # seconds: by then the with block that took the lock is in place, and releases it


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """The handler of Ctrl-C and SIGTERM (CI cancelling a job): a KeyboardInterrupt where the main thread is,
    so that the build cleans up on its way out; delivered again a moment later where raising would leave a
    lock taken."""
    if frame is not None and frame.f_code is _TAKES_A_LOCK:
        signal.signal(signal.SIGALRM, raise_interrupt)
        signal.setitimer(signal.ITIMER_REAL, RETRY_INTERRUPT)
        return
    raise KeyboardInterrupt


class HeldInterrupts:
    """The Ctrl-C and SIGTERM a deferred_interrupts block received so far."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def raise_pending(self) -> None:
        """Where the block can still stop without leaving anything behind: stop there if interrupted."""
        if self.received:
            raise KeyboardInterrupt


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[HeldInterrupts]:
    """Hold Ctrl-C and SIGTERM until the block is done: an engine call that creates something must return
    its result, or an interrupt could land after the engine made the thing but before we know its id."""
    held = HeldInterrupts()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield held
        return
    # SIGALRM too: it is an interrupt raise_interrupt delivers again.
    previous = {signum: signal.signal(signum, lambda received, _frame: held.received.append(received))
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    try:
        yield held
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    held.raise_pending()


# ---------------------------------------------------------------- clean-up nobody waits for


class _Retirer:
    """Stops and removals whose outcome the build no longer needs (a container whose run is over, the work
    tag once the image is handed over), done in order on one thread while the build goes on: `docker stop`
    returns a second after the application exited, and a removal takes a few hundred ms more."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="slimtrace-retire")
        self._pending: list[concurrent.futures.Future[None]] = []

    def submit(self, work: Callable[..., None], *args: object) -> None:
        self._pending.append(self._pool.submit(work, *args))

    def finish(self) -> None:
        """Wait for all of it, Ctrl-C held (what is left would be ours to leave behind); its first error
        is raised."""
        with deferred_interrupts():
            self._pool.shutdown(wait=True)
        for done in self._pending:
            done.result()


_retirer: _Retirer | None = None


@contextlib.contextmanager
def retiring() -> Iterator[None]:
    """Within the block, `retire` hands its work to one background thread; leaving the block waits for all
    of it, whatever way the block ends."""
    global _retirer
    outer, mine = _retirer, _Retirer()
    _retirer = mine
    try:
        yield
    finally:
        _retirer = outer
        mine.finish()


def retire(work: Callable[..., None], *args: object) -> None:
    """Run `work(*args)` on the retiring thread, after what was retired before; at once outside `retiring`."""
    if _retirer is None:
        work(*args)
    else:
        _retirer.submit(work, *args)


# ---------------------------------------------------------------- containers


@contextlib.contextmanager
def owned_container(engine: Engine, spec: ContainerSpec, purpose: str) -> Iterator[str]:
    """Create a container named and labelled for this run; it is removed on the way out whatever happens.
    The removal is set up before the create call, by the name we chose, so no moment is uncovered."""
    run = this_run()
    name = f"{_PREFIX}{run.token}-{purpose}-{next(_container_numbers)}"
    labelled = dataclasses.replace(spec, name=name, labels={**spec.labels, RUN_LABEL: run.token})
    try:
        with deferred_interrupts():
            container_id = engine.create_container(labelled)
        yield container_id
    finally:
        retire(engine.remove_container, name)


def start_owned(engine: Engine, container_id: str) -> None:
    """Start a container of ours with interrupts held. An interrupted start request does not stop the engine
    from starting the container, and Docker recreates a missing bind-mount source as it starts one: a Ctrl-C
    during the request would have us remove the container and the gate's temp dir while the engine, still
    starting it, made that dir again (seen in CI: the Ctrl-C test left an empty gate dir behind)."""
    with deferred_interrupts():
        engine.start(container_id)


# ---------------------------------------------------------------- leftovers of dead runs


@dataclass(frozen=True)
class Leftovers:
    containers: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    directories: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.containers or self.images or self.directories)

    def summary(self) -> str:
        parts = [(len(self.containers), "container"), (len(self.images), "work image tag"),
                 (len(self.directories), "temp dir")]
        return ", ".join(f"{count} {noun}{'s' if count != 1 else ''}" for count, noun in parts if count)


def collect_garbage(engine: Engine, temp_root: Path | None = None) -> Leftovers:
    """Remove what runs whose process is gone left behind: containers first (they may still run and hold a
    temp dir as a bind mount), then work image tags, then temp dirs. What a live run owns is never touched."""
    containers = tuple(
        container_id for container_id, token in engine.labelled_containers(RUN_LABEL).items() if _dead(token)
    )
    for container_id in containers:
        engine.remove_container(container_id)
    # A work tag is <run>-<random>.
    images = tuple(
        tag for tag in engine.repository_tags(WORK_REPOSITORY) if _dead(tag.rpartition(":")[2].rpartition("-")[0])
    )
    for tag in images:
        engine.remove_image(tag)
    root = temp_root or Path(tempfile.gettempdir())
    directories = tuple(str(path) for path in sorted(root.glob(f"{_PREFIX}*")) if _dead_dir(path))
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)
    return Leftovers(containers, images, directories)


def _dead(token: str) -> bool:
    run = RunId.parse(token)
    return run is not None and not run.alive()


def _dead_dir(path: Path) -> bool:
    match = _TEMP_NAME.match(path.name)
    return bool(match) and path.is_dir() and not path.is_symlink() and _dead(match[1])
