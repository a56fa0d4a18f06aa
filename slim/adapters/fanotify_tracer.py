"""slim.tracer.Tracer over fanotify: every open and exec in a container's own overlay, once per path.

A filesystem mark watches the container's whole root; after a file's first event an ignore mark silences
it in the kernel, which keeps the traced application at nearly full speed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import stat
from pathlib import Path, PurePosixPath
from typing import Iterator

from slim.errors import TracingUnavailable
from slim.model import Access, TracedPath, TraceHealth
from slim.recorder_thread import RecorderThread

from .fanotify import (
    FAN_NOFD,
    FAN_ONDIR,
    FAN_OPEN,
    FAN_OPEN_EXEC,
    OVERLAYFS_SUPER_MAGIC,
    Fanotify,
    RawEvent,
    filesystem_magic,
)
from .processes import proc_link

# FAN_ONDIR makes directory opens (listings) reportable. In this classic fd-reporting mode the kernel
# does not echo FAN_ONDIR back in the event mask, so directories are recognised by fstat instead.
TRACE_MASK = FAN_OPEN | FAN_OPEN_EXEC | FAN_ONDIR
# Ignoring only the bits an event carried keeps a later exec of a file that was merely read visible.
# Legacy ignore masks (FAN_MARK_IGNORED_MASK) also apply to directories, FAN_ONDIR or not.
_IGNORABLE = FAN_OPEN | FAN_OPEN_EXEC

log = logging.getLogger(__name__)


class FanotifyTracer:
    """`bounded_queue`: the kernel's default queue limit, so an overflow can happen (tests); unlimited otherwise."""

    def __init__(self, *, bounded_queue: bool = False):
        self._bounded_queue = bounded_queue

    @contextlib.contextmanager
    def session(self) -> Iterator[FanotifySession]:
        with Fanotify(bounded_queue=self._bounded_queue) as notifier:
            yield FanotifySession(notifier)


@dataclasses.dataclass(frozen=True)
class FanotifySession:
    notifier: Fanotify

    def watch(self, root: Path, phase: str) -> Recorder:
        require_own_overlay(root)
        self.notifier.mark_filesystem(root, TRACE_MASK)
        return Recorder(self.notifier, phase)


class Recorder(RecorderThread):
    """Reads a Fanotify group on its own thread and folds its events into one TracedPath per path.

    Use as a context manager (leaving it stops the thread), and call stop() for the result.
    """

    def __init__(self, notifier: Fanotify, phase: str):
        super().__init__("the trace", "slimtrace-recorder", phase)
        self._notifier = notifier
        self._seen: dict[PurePosixPath, TracedPath] = {}
        self._programs: dict[int, str] = {}
        self._events = 0
        self._foreign = 0
        self._overflow = False
        self._own_pid = os.getpid()
        self._start()

    def so_far(self) -> tuple[TracedPath, ...]:
        """The paths recorded until now, sorted, while the thread goes on."""
        # list() copies the dict in one step that the recorder thread cannot interleave (it holds the GIL).
        return tuple(sorted(list(self._seen.values()), key=lambda traced: traced.path))

    def stop(self) -> tuple[tuple[TracedPath, ...], TraceHealth]:
        """Read what the kernel has already queued, stop the thread, and return the paths sorted."""
        self._stopped()
        health = TraceHealth(events=self._events, overflow=self._overflow, foreign_events=self._foreign)
        return self.so_far(), health

    def _run(self) -> None:
        poller = self._poller()
        poller.register(self._notifier.fileno(), select.POLLIN)
        while not self._woken(poller):
            self._consume(self._notifier.read(0))
        while events := self._notifier.read(0):
            self._consume(events)

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
            return proc_link(pid, "exe")
        if pid not in self._programs:
            self._programs[pid] = proc_link(pid, "exe")
        return self._programs[pid]

    def _record(self, path: PurePosixPath, accesses: frozenset[Access], program: str) -> None:
        known = self._seen.get(path)
        if known is None:
            self._seen[path] = TracedPath(path=path, accesses=accesses, program=program, phase=self._phase)
            self._noted()
        elif not accesses <= known.accesses:
            self._seen[path] = dataclasses.replace(known, accesses=known.accesses | accesses)
            self._noted()


def _event_path(fd: int) -> PurePosixPath | None:
    """The path of an event's file as the container sees it; None for what has no path (anon inodes)."""
    target = os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)")
    return PurePosixPath(target) if target.startswith("/") else None


def _accesses(mask: int, is_dir: bool) -> frozenset[Access]:
    if is_dir:
        return frozenset({Access.LIST})
    return frozenset(access for bit, access in ((FAN_OPEN, Access.OPEN), (FAN_OPEN_EXEC, Access.EXEC)) if mask & bit)


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
