"""Run the container under fanotify while probes exercise it -> Trace.

The container starts behind a gate (slim/adapters/c_helpers): the host marks the container's overlay filesystem once
the engine has mounted it (reached through the gate's /proc/PID/root, whatever engine and storage mode
mounted it), and only then lets the gate exec the real program, so the very first open is seen. Each
file is reported once: after its first event an ignore mark silences it in the kernel, which keeps the
traced application at nearly full speed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import shutil
import signal
import stat
import threading
from pathlib import Path, PurePosixPath
from typing import Callable

from slim.adapters.fanotify import (
    FAN_NOFD,
    FAN_ONDIR,
    FAN_OPEN,
    FAN_OPEN_EXEC,
    OVERLAYFS_SUPER_MAGIC,
    Fanotify,
    RawEvent,
    filesystem_magic,
)
from slim.engine import BindMount, ContainerSpec, Engine
from slim.errors import SlimError, TracingUnavailable
from slim.adapters.c_helpers import gate_binary, lookupd_binary
from slim.build.lookups import LookupRecorder
from slim.model import Access, RunOutcome, Trace, TracedPath, TraceHealth
from slim.ownership import owned_container, temp_dir

# FAN_ONDIR makes directory opens (listings) reportable. In this classic fd-reporting mode the kernel
# does not echo FAN_ONDIR back in the event mask, so directories are recognised by fstat instead.
TRACE_MASK = FAN_OPEN | FAN_OPEN_EXEC | FAN_ONDIR
# Ignoring only the bits an event carried keeps a later exec of a file that was merely read visible.
# Legacy ignore masks (FAN_MARK_IGNORED_MASK) also apply to directories, FAN_ONDIR or not.
_IGNORABLE = FAN_OPEN | FAN_OPEN_EXEC

GATE_MOUNT = "/.slimtrace"
GATE_NAME = "gate"
GO_NAME = "go"
LOOKUP_SOCKET_NAME = "lookups"  # gate.c's LOOKUP_SOCKET
STARTUP = "startup"
SHUTDOWN = "shutdown"
# What `docker stop` gives an application that handles its stop signal, as the engine's default does.
STOP_TIMEOUT = 10

Exercise = Callable[[str, Callable[[str], None]], RunOutcome]

log = logging.getLogger(__name__)


class Recorder:
    """Reads a Fanotify group on its own thread and folds its events into one TracedPath per path.

    Use as a context manager (leaving it stops the thread), and call stop() for the result.
    """

    def __init__(self, notifier: Fanotify):
        self._notifier = notifier
        self._phase = STARTUP
        self._seen: dict[PurePosixPath, TracedPath] = {}
        self._programs: dict[int, str] = {}
        self._events = 0
        self._foreign = 0
        self._overflow = False
        self._error: Exception | None = None
        self._own_pid = os.getpid()
        # stop() writes to this pipe so the thread's poll returns at once instead of at a timeout.
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="slimtrace-recorder", daemon=True)
        self._thread.start()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt()

    def set_phase(self, name: str) -> None:
        """Label the files first seen from now on (e.g. with the probe that is running)."""
        self._phase = name

    def stop(self) -> tuple[tuple[TracedPath, ...], TraceHealth]:
        """Read what the kernel has already queued, stop the thread, and return the paths sorted."""
        self._halt()
        if self._error is not None:
            raise SlimError(f"recording the trace failed: {self._error}") from self._error
        paths = tuple(sorted(self._seen.values(), key=lambda traced: traced.path))
        return paths, TraceHealth(events=self._events, overflow=self._overflow, foreign_events=self._foreign)

    def _halt(self) -> None:
        if self._wake_w < 0:
            return
        os.write(self._wake_w, b"\0")
        self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_w = -1

    def _run(self) -> None:
        try:
            poller = select.poll()
            poller.register(self._notifier.fileno(), select.POLLIN)
            poller.register(self._wake_r, select.POLLIN)
            while not any(fd == self._wake_r for fd, _ in poller.poll()):
                self._consume(self._notifier.read(0))
            while events := self._notifier.read(0):
                self._consume(events)
        except Exception as error:  # handed to the caller's thread by stop()
            self._error = error

    def _consume(self, events: list[RawEvent]) -> None:
        try:
            for event in events:
                self._handle(event)
        finally:
            # The kernel opened one fd per event for us; an error must not leak the rest of the batch.
            for event in events:
                if event.fd != FAN_NOFD:
                    os.close(event.fd)

    def _handle(self, event: RawEvent) -> None:
        self._events += 1
        if event.overflow:
            self._overflow = True
        elif event.pid == self._own_pid:
            self._foreign += 1
        else:
            self._sight(event)

    def _sight(self, event: RawEvent) -> None:
        is_dir = stat.S_ISDIR(os.fstat(event.fd).st_mode)
        self._ignore_from_now_on(event)
        path = _event_path(event.fd)
        if path is None:
            return
        accesses = _accesses(event.mask, is_dir)
        self._record(path, accesses, self._program(event.pid, Access.EXEC in accesses))

    def _ignore_from_now_on(self, event: RawEvent) -> None:
        try:
            self._notifier.ignore(event.fd, event.mask & _IGNORABLE)
        except OSError as error:
            # Without the mark the file is merely reported again (and folded into its entry): slower,
            # never less complete.
            log.debug("no ignore mark for an event of pid %d: %s", event.pid, error)

    def _program(self, pid: int, execed: bool) -> str:
        if execed:
            # Mid-execve /proc/<pid>/exe may still name the old program: look it up afresh later.
            self._programs.pop(pid, None)
            return _executable(pid)
        if pid not in self._programs:
            self._programs[pid] = _executable(pid)
        return self._programs[pid]

    def _record(self, path: PurePosixPath, accesses: frozenset[Access], program: str) -> None:
        known = self._seen.get(path)
        if known is None:
            self._seen[path] = TracedPath(path=path, accesses=accesses, program=program, phase=self._phase)
        elif not accesses <= known.accesses:
            self._seen[path] = dataclasses.replace(known, accesses=known.accesses | accesses)


def _event_path(fd: int) -> PurePosixPath | None:
    """The path of an event's file as the container sees it; None for what has no path (anon inodes)."""
    target = os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)")
    return PurePosixPath(target) if target.startswith("/") else None


def _accesses(mask: int, is_dir: bool) -> frozenset[Access]:
    if is_dir:
        return frozenset({Access.LIST})
    return frozenset(access for bit, access in ((FAN_OPEN, Access.OPEN), (FAN_OPEN_EXEC, Access.EXEC)) if mask & bit)


def _executable(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:  # the process already exited
        return ""


def run_traced(
    engine: Engine, spec: ContainerSpec, exercise: Exercise, *, bounded_queue: bool = False, lookups: bool = True
) -> Trace:
    """Run `spec` behind the gate, traced from its first instruction, while `exercise` probes it.

    `spec.entrypoint + spec.command` must be the real argv. `exercise(container_id, set_phase)` runs the
    probes, labelling each with set_phase, and says how the container behaved. `lookups=False` leaves the
    lookup filter out (opens only). The container and the gate's temp dir are removed whatever happens.
    """
    argv = (spec.entrypoint or ()) + (spec.command or ())
    if not argv:
        raise ValueError("run_traced needs the real argv in spec.entrypoint + spec.command")
    gate = gate_binary()
    with contextlib.ExitStack() as cleanup:
        gate_dir = Path(cleanup.enter_context(temp_dir("gate")))
        _install_gate(gate, gate_dir)
        notifier = cleanup.enter_context(Fanotify(bounded_queue=bounded_queue))
        # Listening before the container starts: the gate connects as soon as it may go.
        socket_path = gate_dir / LOOKUP_SOCKET_NAME if lookups else None
        lookup_recorder = cleanup.enter_context(LookupRecorder(socket_path, lookupd_binary(), STARTUP))
        container_id = cleanup.enter_context(owned_container(engine, _gated(spec, argv, gate_dir), "trace"))
        engine.start(container_id)
        notifier.mark_filesystem(container_root(engine, container_id), TRACE_MASK)
        recorder = cleanup.enter_context(Recorder(notifier))
        (gate_dir / GO_NAME).touch()

        def set_phase(name: str) -> None:
            recorder.set_phase(name)
            lookup_recorder.set_phase(name)

        run = exercise(container_id, set_phase)
        # What the application opens while shutting down gracefully is needed too.
        set_phase(SHUTDOWN)
        _stop(engine, container_id, spec.stop_signal)
        paths, health = recorder.stop()
        looked_up, lookup_health = lookup_recorder.stop()
    return Trace(paths=paths, health=health, run=run, lookups=looked_up, lookup_health=lookup_health)


def _stop(engine: Engine, container_id: str, stop_signal: str | None) -> None:
    """Stop the container, waiting for a graceful shutdown only when one can happen: the kernel never
    delivers a signal to a PID namespace's init that has no handler for it, so such a PID 1 would only
    die at the timeout's SIGKILL, having run no shutdown code in between (and traced nothing more)."""
    pid = engine.pid(container_id)
    number = signal_number(stop_signal or "SIGTERM")
    graceful = pid is None or number is None or catches_signal(pid, number)
    engine.stop(container_id, timeout=STOP_TIMEOUT if graceful else 0)


def signal_number(name: str) -> int | None:
    """A StopSignal as images spell it ("SIGQUIT", "QUIT", "3") -> its number; None when unknown."""
    if name.isdigit():
        return int(name)
    with contextlib.suppress(KeyError):
        return signal.Signals["SIG" + name.upper().removeprefix("SIG")].value
    return None


def catches_signal(pid: int, number: int) -> bool:
    """Whether the process has a handler installed for the signal (SigCgt in /proc/PID/status). A process
    that already exited catches nothing."""
    try:
        with open(f"/proc/{pid}/status") as status:
            caught = next((line.split()[1] for line in status if line.startswith("SigCgt:")), "0")
    except OSError:
        return False
    return bool(int(caught, 16) >> (number - 1) & 1)


def container_root(engine: Engine, container_id: str) -> Path:
    """The started container's root filesystem, reached through its first process (the gate, waiting for
    go): the same path whatever engine and storage mode mounted it, and never the host's own root."""
    pid = engine.pid(container_id)
    if pid is None:
        raise SlimError(f"the traced container stopped before tracing began{_last_words(engine, container_id)}")
    root = Path(f"/proc/{pid}/root")
    require_own_overlay(root)
    return root


def require_own_overlay(root: Path) -> None:
    """A filesystem mark watches a whole superblock. An overlay mounted for this one container is its
    alone; a root on the host's filesystem (vfs storage, btrfs subvolumes, a bind mount) would let the
    trace see other containers and the host, so it is refused."""
    magic = filesystem_magic(root)
    if magic != OVERLAYFS_SUPER_MAGIC:
        raise TracingUnavailable(
            f"the container's root filesystem is not an overlay of its own (statfs type {magic:#x}): tracing needs"
            " overlay storage (Docker's overlay2, the containerd overlayfs snapshotter, Podman's overlay)"
        )
    if os.stat(root).st_dev == os.stat("/").st_dev:
        raise TracingUnavailable("the container's root filesystem is the host's: a trace of it would see the host")


def _last_words(engine: Engine, container_id: str) -> str:
    logs = engine.logs(container_id, tail=3).strip()
    return f" ({' | '.join(logs.splitlines())})" if logs else ""


def _install_gate(gate: Path, gate_dir: Path) -> None:
    # 0755: the container may run as any user, and it must reach the gate through this directory.
    gate_dir.chmod(0o755)
    try:
        os.link(gate, gate_dir / GATE_NAME)
    except OSError:  # the cache is on another filesystem than the temp dir
        shutil.copy2(gate, gate_dir / GATE_NAME)


def _gated(spec: ContainerSpec, argv: tuple[str, ...], gate_dir: Path) -> ContainerSpec:
    return dataclasses.replace(
        spec,
        entrypoint=(f"{GATE_MOUNT}/{GATE_NAME}",),
        command=argv,
        mounts=spec.mounts + (BindMount(source=str(gate_dir), target=GATE_MOUNT, read_only=True),),
    )
