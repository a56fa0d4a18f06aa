"""The host's side of the gate's seccomp filter: the listener fd it hands over, and its notifications.

The gate (slim/gate/gate.c) installs a filter that sends the path-lookup calls (stat, access, readlink,
...) to a supervisor with SECCOMP_RET_USER_NOTIF. This module receives the filter's listener fd over a
unix socket (SCM_RIGHTS), reads notifications, reads a notifying process's memory, and answers "continue"
(the call then runs as if unfiltered). Only ioctl/struct/socket from the standard library: no C needed.
Kernel errors that mean "this host cannot trace lookups" become LookupsUnavailable here.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from dataclasses import dataclass

# <linux/audit.h>
AUDIT_ARCH_X86_64 = 0xC000_003E
AUDIT_ARCH_AARCH64 = 0xC000_00B7

# struct seccomp_notif: id u64, pid u32, flags u32, then struct seccomp_data: nr s32, arch u32,
# instruction_pointer u64, args u64[6].
_NOTIF = struct.Struct("=QIIiIQ6Q")
# struct seccomp_notif_resp: id u64, val s64, error s32, flags u32.
_RESP = struct.Struct("=QqiI")
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1


def _iowr(number: int, size: int, direction: int = 3) -> int:
    """_IOC(direction, '!', number, size) of <linux/seccomp.h>: 3 is read|write, 1 is write."""
    return direction << 30 | size << 16 | ord("!") << 8 | number


SECCOMP_IOCTL_NOTIF_RECV = _iowr(0, _NOTIF.size)
SECCOMP_IOCTL_NOTIF_SEND = _iowr(1, _RESP.size)
SECCOMP_IOCTL_NOTIF_ID_VALID = _iowr(2, 8, direction=1)

# SECCOMP_USER_NOTIF_FLAG_CONTINUE, without which every call would have to be emulated, came in Linux 5.5.
CONTINUE_SINCE = (5, 5)
PATH_MAX = 4096
_PAGE = os.sysconf("SC_PAGE_SIZE")
_GATE_SAYS_OK = b"ok"


class LookupsUnavailable(Exception):
    """This host or container cannot trace lookups; opens are still traced."""


@dataclass(frozen=True)
class Notification:
    """One intercepted call, its process still waiting for our answer."""

    id: int
    pid: int  # in our (the host's) PID namespace
    arch: int  # AUDIT_ARCH_*
    nr: int
    args: tuple[int, ...]  # six raw u64 arguments


def parse_notification(buf: bytes) -> Notification:
    """A struct seccomp_notif as SECCOMP_IOCTL_NOTIF_RECV filled it. No syscalls."""
    notif_id, pid, _, nr, arch, _, *args = _NOTIF.unpack(buf)
    return Notification(id=notif_id, pid=pid, arch=arch, nr=nr, args=tuple(args))


def check_kernel(release: str | None = None) -> None:
    """Raise LookupsUnavailable when the kernel predates "continue" answers."""
    release = release or os.uname().release
    try:
        version = tuple(int(part) for part in release.split("-")[0].split(".")[:2])
    except ValueError:  # an unusual release string: try, the gate reports what fails
        return
    if version < CONTINUE_SINCE:
        raise LookupsUnavailable(f"Linux {release} lacks seccomp user notification with continue (5.5 or later)")


class GateSocket:
    """The unix socket the gate connects to, bound in the gate's directory. Owns it: a context manager."""

    def __init__(self, path: str):
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._socket.bind(path)
        # The container may run as any user; connecting needs write permission on the socket.
        os.chmod(path, 0o666)
        self._socket.listen(1)

    def __enter__(self) -> GateSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self._socket.close()

    def fileno(self) -> int:
        return self._socket.fileno()

    def receive_listener(self) -> int:
        """Accept the gate (it has connected: poll said so) and return the listener fd it sent."""
        connection, _ = self._socket.accept()
        with connection:
            message, fds, _, _ = socket.recv_fds(connection, 256, 1)
        if message != _GATE_SAYS_OK or not fds:
            for fd in fds:
                os.close(fd)
            raise LookupsUnavailable(message.decode(errors="replace") or "the gate closed its socket without a word")
        return fds[0]


class SeccompListener:
    """A seccomp listener fd: receive notifications and let each call continue. Owns the fd."""

    def __init__(self, fd: int):
        self._fd = fd

    def __enter__(self) -> SeccompListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        """Calls still filtered after this fail with ENOSYS: close only once the container is gone."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def receive(self) -> Notification | None:
        """The next notification (poll said one is ready); None when its process went away meanwhile."""
        buf = bytearray(_NOTIF.size)  # the kernel insists on a zeroed buffer
        try:
            fcntl.ioctl(self._fd, SECCOMP_IOCTL_NOTIF_RECV, buf, True)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.EINTR):
                return None
            raise
        return parse_notification(bytes(buf))

    def still_waiting(self, notification: Notification) -> bool:
        """True while the call's process waits for us: what we read of it since is really its."""
        try:
            fcntl.ioctl(self._fd, SECCOMP_IOCTL_NOTIF_ID_VALID, struct.pack("=Q", notification.id))
        except OSError as err:
            if err.errno == errno.ENOENT:
                return False
            raise
        return True

    def let_continue(self, notification: Notification) -> None:
        """Let the call run as if it had never been stopped."""
        answer = bytearray(_RESP.pack(notification.id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE))
        try:
            fcntl.ioctl(self._fd, SECCOMP_IOCTL_NOTIF_SEND, answer, True)
        except OSError as err:
            if err.errno != errno.ENOENT:  # ENOENT: the process was interrupted or died meanwhile
                raise


def read_string(pid: int, address: int) -> str | None:
    """The NUL-terminated string at `address` in process `pid`; None when it cannot be read."""
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        collected = b""
        while len(collected) < PATH_MAX:
            # Page by page: a string may end just before an unmapped page.
            chunk = os.pread(fd, _PAGE - (address + len(collected)) % _PAGE, address + len(collected))
            if not chunk:
                return None
            end = chunk.find(b"\0")
            if end >= 0:
                return os.fsdecode(collected + chunk[:end])
            collected += chunk
        return None
    except OSError:
        return None
    finally:
        os.close(fd)
