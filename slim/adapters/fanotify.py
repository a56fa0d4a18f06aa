"""Our own fanotify binding: cffi in ABI mode over the C library's two calls, plus a pure event parser.

ABI mode (`dlopen(None)`) finds fanotify_init/fanotify_mark in the libc the interpreter already runs
on, so installing slimtrace never needs a C compiler. Kernel errors become OSError in one helper, and
the ones that mean "this host cannot trace" become TracingUnavailable at this edge.
"""
from __future__ import annotations

import errno
import os
import resource
import select
import struct
from dataclasses import dataclass
from typing import Callable

from cffi import FFI

from slim.errors import TracingUnavailable

# <linux/fanotify.h>, only what slimtrace uses.
FAN_OPEN = 0x0000_0020
FAN_OPEN_EXEC = 0x0000_1000
FAN_Q_OVERFLOW = 0x0000_4000
FAN_ONDIR = 0x4000_0000

FAN_CLOEXEC = 0x01
FAN_NONBLOCK = 0x02
FAN_CLASS_NOTIF = 0x00
FAN_UNLIMITED_QUEUE = 0x10
FAN_UNLIMITED_MARKS = 0x20

FAN_MARK_ADD = 0x001
FAN_MARK_IGNORED_MASK = 0x020
FAN_MARK_IGNORED_SURV_MODIFY = 0x040
FAN_MARK_FILESYSTEM = 0x100

FANOTIFY_METADATA_VERSION = 3
FAN_NOFD = -1

# struct fanotify_event_metadata: event_len u32, vers u8, reserved u8, metadata_len u16, mask u64,
# fd s32, pid s32 (native byte order: the kernel writes it for this machine).
_METADATA = struct.Struct("=IBBHQii")

READ_SIZE = 64 * 1024
_AT_FDCWD = -100
OVERLAYFS_SUPER_MAGIC = 0x794C7630
# struct statfs starts with f_type (a native long on every 64-bit Linux); the kernel writes 120 bytes on
# x86_64 and arm64, and the buffer leaves room to spare.
_STATFS_SIZE = 256
_F_TYPE = struct.Struct("=l")

# Notification class: we only observe, never decide. The unlimited marks flag matters because every
# file the container opens gets its own ignore mark, and a big image opens more than the default budget.
_INIT_FLAGS = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_MARKS
# O_NONBLOCK: the kernel opens each event's file for us; on a FIFO a blocking open would hang the
# container's own open() until a writer came.
_EVENT_F_FLAGS = os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC | os.O_NONBLOCK

_ffi = FFI()
_ffi.cdef(
    """
    int fanotify_init(unsigned int flags, unsigned int event_f_flags);
    int fanotify_mark(int fanotify_fd, unsigned int flags, uint64_t mask, int dirfd, const char *pathname);
    int statfs(const char *path, void *buf);
    """
)
_libc = _ffi.dlopen(None)

# What a failing errno means for someone who just wants to trace a container.
_WHY_UNAVAILABLE = {
    errno.EPERM: "fanotify needs root (CAP_SYS_ADMIN): run slimtrace as root on the Docker host",
    errno.ENOSYS: "this kernel has no fanotify (CONFIG_FANOTIFY is off)",
    errno.EINVAL: "this kernel's fanotify lacks FAN_MARK_FILESYSTEM or FAN_OPEN_EXEC (Linux 5.1 or later)",
}


@dataclass(frozen=True)
class RawEvent:
    """One fanotify_event_metadata record. `fd` is open in our process (FAN_NOFD on overflow)."""

    mask: int
    fd: int
    pid: int

    @property
    def overflow(self) -> bool:
        return bool(self.mask & FAN_Q_OVERFLOW)


def parse_events(buf: bytes) -> list[RawEvent]:
    """Split what one read() of a fanotify fd returned into events. No syscalls."""
    events = []
    offset = 0
    while offset < len(buf):
        if len(buf) - offset < _METADATA.size:
            raise ValueError(f"fanotify buffer ends inside an event header at byte {offset} of {len(buf)}")
        event_len, vers, _, metadata_len, mask, fd, pid = _METADATA.unpack_from(buf, offset)
        if vers != FANOTIFY_METADATA_VERSION:
            raise ValueError(f"fanotify metadata version {vers} at byte {offset}, expected {FANOTIFY_METADATA_VERSION}")
        if not _METADATA.size <= metadata_len <= event_len <= len(buf) - offset:
            raise ValueError(f"fanotify event at byte {offset} has bad lengths (event {event_len}, metadata {metadata_len})")
        events.append(RawEvent(mask=mask, fd=fd, pid=pid))
        offset += event_len
    return events


def call_checked(call: Callable[..., int], *args: object, path: str | None = None) -> int:
    """Call a C function that returns -1 and sets errno on failure; retry on EINTR, else raise OSError."""
    while True:
        result = call(*args)
        if result != -1:
            return result
        err = _ffi.errno
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err), path)


def filesystem_magic(path: str | os.PathLike[str]) -> int:
    """statfs(2)'s f_type of the filesystem `path` lives on: which kind of superblock a mark would watch."""
    name = os.fsdecode(path)
    buffer = _ffi.new("char[]", _STATFS_SIZE)
    call_checked(_libc.statfs, os.fsencode(name), buffer, path=name)
    return _F_TYPE.unpack_from(_ffi.buffer(buffer))[0] & 0xFFFF_FFFF


def raise_nofile_limit() -> None:
    """Each read hands us up to READ_SIZE/24 open event fds at once; the kernel drops the events it cannot
    give an fd, so allow as many open files as the hard limit lets us."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _unavailable(err: OSError, what: str) -> TracingUnavailable:
    detail = f"{what}: {err.strerror}"
    why = _WHY_UNAVAILABLE.get(err.errno)
    return TracingUnavailable(f"{why} ({detail})" if why else detail)


class Fanotify:
    """A fanotify group in classic (fd-reporting) mode. Owns its fd: use as a context manager."""

    def __init__(self, *, bounded_queue: bool = False):
        raise_nofile_limit()
        flags = _INIT_FLAGS if bounded_queue else _INIT_FLAGS | FAN_UNLIMITED_QUEUE
        try:
            self._fd = call_checked(_libc.fanotify_init, flags, _EVENT_F_FLAGS)
        except OSError as err:
            raise _unavailable(err, "fanotify_init") from err

    def __enter__(self) -> Fanotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def mark_filesystem(self, path: str | os.PathLike[str], mask: int) -> None:
        """Watch `mask` on every file of the filesystem (superblock) that `path` lives on."""
        name = os.fsdecode(path)
        flags = FAN_MARK_ADD | FAN_MARK_FILESYSTEM
        try:
            call_checked(_libc.fanotify_mark, self._fd, flags, mask, _AT_FDCWD, os.fsencode(name), path=name)
        except OSError as err:
            raise _unavailable(err, f"fanotify_mark {name}") from err

    def ignore(self, event_fd: int, mask: int) -> None:
        """Stop reporting `mask` for the inode behind `event_fd`, also after it is written to."""
        flags = FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY
        call_checked(_libc.fanotify_mark, self._fd, flags, mask, event_fd, _ffi.NULL)

    def read(self, timeout: float) -> list[RawEvent]:
        """The events queued now, waiting up to `timeout` seconds for the first; [] if none came."""
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return []
        try:
            return parse_events(os.read(self._fd, READ_SIZE))
        except BlockingIOError:
            return []
