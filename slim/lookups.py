"""Record the paths the traced container only checks (stat, access, readlink, chdir, O_PATH opens).

fanotify reports opens; a start script's `[ -f /usr/share/app/schema.sql ]` or a program's access() opens
nothing, yet the image breaks without the file. The gate installs a seccomp filter that stops just these
calls (slim/gate/gate.c); the LookupRecorder here receives the filter's listener from the gate, reads
each stopped call's path from the process's memory, resolves a relative path against the process's
directory fd or cwd (as the container sees them), records it once, and lets the call continue.

Only the gate's descendants are filtered: other containers and the host are never seen, and a process
that `docker exec` starts (an exec probe) is not either. Nothing is lost: a stopped call waits for us.
"""
from __future__ import annotations

import logging
import os
import select
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from slim.adapters.seccomp import (
    AUDIT_ARCH_AARCH64,
    AUDIT_ARCH_X86_64,
    GateSocket,
    LookupsUnavailable,
    Notification,
    SeccompListener,
    check_kernel,
    read_string,
)
from slim.errors import SlimError
from slim.model import Lookup, LookupHealth

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
O_NOFOLLOW = 0o400000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallShape:
    """Where a filtered call keeps its path, and whether it follows a symlink at the end."""

    path_arg: int
    dirfd_arg: int | None = None  # the *at() calls: relative paths start at this directory fd
    follows: bool = True
    flags_arg: int | None = None  # a flag here (AT_SYMLINK_NOFOLLOW, O_NOFOLLOW) turns following off
    nofollow_flag: int = 0

    def follows_symlink(self, args: tuple[int, ...]) -> bool:
        if self.flags_arg is not None and args[self.flags_arg] & self.nofollow_flag:
            return False
        return self.follows

    def dirfd(self, args: tuple[int, ...]) -> int:
        if self.dirfd_arg is None:
            return AT_FDCWD
        low = args[self.dirfd_arg] & 0xFFFF_FFFF  # an int argument: the low half, signed
        return low - (1 << 32) if low & 0x8000_0000 else low


_AT = dict(dirfd_arg=0, path_arg=1)
_STATX = CallShape(**_AT, flags_arg=2, nofollow_flag=AT_SYMLINK_NOFOLLOW)
_NEWFSTATAT = CallShape(**_AT, flags_arg=3, nofollow_flag=AT_SYMLINK_NOFOLLOW)
_OPENAT = CallShape(**_AT, flags_arg=2, nofollow_flag=O_NOFOLLOW)
_READLINKAT = CallShape(**_AT, follows=False)
_FACCESSAT = CallShape(**_AT)
_FACCESSAT2 = CallShape(**_AT, flags_arg=3, nofollow_flag=AT_SYMLINK_NOFOLLOW)
_CHDIR = CallShape(path_arg=0)
# The calls gate.c filters, by architecture and syscall number.
CALLS: dict[tuple[int, int], CallShape] = {
    **{(AUDIT_ARCH_X86_64, nr): shape for nr, shape in {
        4: CallShape(path_arg=0),  # stat
        6: CallShape(path_arg=0, follows=False),  # lstat
        21: CallShape(path_arg=0),  # access
        89: CallShape(path_arg=0, follows=False),  # readlink
        80: _CHDIR,
        2: CallShape(path_arg=0, flags_arg=1, nofollow_flag=O_NOFOLLOW),  # open with O_PATH
        257: _OPENAT, 262: _NEWFSTATAT, 267: _READLINKAT, 269: _FACCESSAT, 332: _STATX, 439: _FACCESSAT2,
    }.items()},
    **{(AUDIT_ARCH_AARCH64, nr): shape for nr, shape in {
        49: _CHDIR, 56: _OPENAT, 79: _NEWFSTATAT, 78: _READLINKAT, 48: _FACCESSAT, 291: _STATX, 439: _FACCESSAT2,
    }.items()},
}


def absolute(path: str, base: str | None) -> PurePosixPath | None:
    """`path` made absolute against `base` (the process's cwd or directory fd); None when it names nothing."""
    if path.startswith("/"):
        return PurePosixPath(path)
    if not path or base is None or not base.startswith("/"):
        return None
    return PurePosixPath(base) / path


class LookupRecorder:
    """Listens on the gate's socket, then answers the filter's notifications on its own thread.

    Use as a context manager (leaving it stops the thread and closes the listener), and call stop() for
    the lookups once the container is gone.
    """

    def __init__(self, socket_path: Path, phase: str):
        self._phase = phase
        self._seen: dict[tuple[PurePosixPath, bool], Lookup] = {}
        self._calls = 0
        self._note = ""
        self._error: Exception | None = None
        self._gate: GateSocket | None = None
        self._listener: SeccompListener | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        try:
            check_kernel()
            self._gate = GateSocket(str(socket_path))
        except (LookupsUnavailable, OSError) as why:  # no socket: the gate runs the program unfiltered
            self._note = str(why)
        self._thread = threading.Thread(target=self._run, name="slimtrace-lookups", daemon=True)
        self._thread.start()

    def __enter__(self) -> LookupRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt()

    def set_phase(self, name: str) -> None:
        self._phase = name

    def stop(self) -> tuple[tuple[Lookup, ...], LookupHealth]:
        self._halt()
        if self._error is not None:
            raise SlimError(f"recording lookups failed: {self._error}") from self._error
        lookups = tuple(sorted(self._seen.values(), key=lambda lookup: (lookup.path, lookup.follow)))
        if self._note:
            return lookups, LookupHealth(traced=False, calls=self._calls, note=self._note)
        return lookups, LookupHealth(traced=True, calls=self._calls)

    def _halt(self) -> None:
        if self._wake_w < 0:
            return
        os.write(self._wake_w, b"\0")
        self._thread.join()
        for owned in (self._listener, self._gate):
            if owned is not None:
                owned.__exit__(None, None, None)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_w = -1

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if self._gate is not None:
            poller.register(self._gate.fileno(), select.POLLIN)
        try:
            while True:
                for fd, events in poller.poll():
                    if fd == self._wake_r:
                        self._note = self._note or self._never_connected()
                        return
                    if self._gate is not None and fd == self._gate.fileno():
                        poller.unregister(fd)
                        self._connect(poller)
                    elif events & select.POLLIN:
                        self._answer(self._listener)
                    else:  # POLLHUP: every filtered process has exited
                        poller.unregister(fd)
        except Exception as error:  # handed to the caller's thread by stop()
            self._error = error
            if self._listener is not None:  # a filtered call now fails (ENOSYS) rather than hangs
                self._listener.close()

    def _never_connected(self) -> str:
        return "" if self._listener is not None else "the gate never handed over its seccomp listener"

    def _connect(self, poller: select.poll) -> None:
        try:
            self._listener = SeccompListener(self._gate.receive_listener())
        except LookupsUnavailable as why:
            self._note = str(why)
            return
        poller.register(self._listener.fileno(), select.POLLIN)

    def _answer(self, listener: SeccompListener) -> None:
        notification = listener.receive()
        if notification is None:
            return
        self._calls += 1
        try:
            lookup = self._lookup_of(notification)
            # Checked after reading: had the process died, its pid could name another by now.
            if lookup is not None and listener.still_waiting(notification):
                self._record(lookup, notification.pid)
        finally:
            listener.let_continue(notification)

    def _lookup_of(self, notification: Notification) -> tuple[PurePosixPath, bool] | None:
        shape = CALLS.get((notification.arch, notification.nr))
        if shape is None:
            return None
        spelled = read_string(notification.pid, notification.args[shape.path_arg])
        if spelled is None:
            return None
        base = None if spelled.startswith("/") else _directory(notification.pid, shape.dirfd(notification.args))
        path = absolute(spelled, base)
        return None if path is None else (path, shape.follows_symlink(notification.args))

    def _record(self, key: tuple[PurePosixPath, bool], pid: int) -> None:
        if key not in self._seen:
            path, follow = key
            self._seen[key] = Lookup(path=path, follow=follow, program=_executable(pid), phase=self._phase)


def _directory(pid: int, dirfd: int) -> str | None:
    """Where a relative path of process `pid` starts, as the container sees it."""
    link = f"/proc/{pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{pid}/fd/{dirfd}"
    try:
        target = os.readlink(link)
    except OSError:
        return None
    return None if target.endswith(" (deleted)") else target


def _executable(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:  # the process already exited
        return ""
