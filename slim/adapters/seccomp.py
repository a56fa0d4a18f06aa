"""The host's side of the gate's socket, and of its seccomp filter: the listener fd the gate hands over,
and its supervisor.

The gate (slim/adapters/c_helpers/gate.c) connects to the host's socket and waits for a word: "traced"
(the eBPF tracer follows it: slim/adapters/bpf_lookups.py) or "filter". Then it installs a filter that
stops the path-lookup calls (stat, access, readlink, ...) with SECCOMP_RET_USER_NOTIF and sends the
filter's listener fd over the socket (SCM_RIGHTS). The supervisor that answers the stopped calls is a
small C program (slim/adapters/c_helpers/lookupd.c): a server may stat a file on every request, and each
stopped call waits for the answer, so the loop must cost microseconds. This module receives the fd, runs
the supervisor on it and parses what it reports. Whatever means "this host cannot trace lookups" becomes
LookupsUnavailable here.
"""
from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .processes import catches_signal

# SECCOMP_USER_NOTIF_FLAG_CONTINUE, without which every call would have to be emulated, came in Linux 5.5.
CONTINUE_SINCE = (5, 5)
_GATE_SAYS_OK = b"ok"
_HOST_TRACES, _HOST_WANTS_FILTER = b"traced", b"filter"  # gate.c's words
_CALLS_RECORD = "calls"
_FIELDS = 3  # lookupd's records: three NUL-terminated fields
HANDLER_WAIT = 2.0  # seconds a just-started lookupd gets to install its SIGTERM handler (it takes microseconds)
HANDLER_POLL = 0.001


class LookupsUnavailable(Exception):
    """This host or container cannot trace lookups; opens are still traced."""


@dataclass(frozen=True)
class LookupRecord:
    """A path a supervised process looked up, reported by lookupd the first time it saw it."""

    path: str  # absolute, as the container sees it
    follow: bool  # False when the call looks at a symlink itself (lstat, readlink)
    program: str  # the process's executable ("" when it could not be read)


def check_kernel(release: str | None = None) -> None:
    """Raise LookupsUnavailable when the kernel predates "continue" answers."""
    release = release or os.uname().release
    try:
        version = tuple(int(part) for part in release.split("-")[0].split(".")[:2])
    except ValueError:  # an unusual release string: try; the gate reports what fails
        return
    if version < CONTINUE_SINCE:
        raise LookupsUnavailable(f"Linux {release} lacks seccomp user notification with continue (5.5 or later)")


def parse_records(buf: bytes) -> tuple[list[LookupRecord], int | None, bytes]:
    """Split lookupd's output into lookups, the final call count (None until it came) and an unfinished
    tail to prepend to the next read. No syscalls."""
    fields = buf.split(b"\0")
    complete = (len(fields) - 1) // _FIELDS * _FIELDS  # the last item follows the last NUL: unfinished
    records, calls = [], None
    for start in range(0, complete, _FIELDS):
        kind, program, path = (os.fsdecode(field) for field in fields[start:start + _FIELDS])
        if kind == _CALLS_RECORD:
            calls = int(program)
        else:
            records.append(LookupRecord(path=path, follow=kind == "1", program=program))
    return records, calls, b"\0".join(fields[complete:])


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

    def accept(self) -> GateConnection:
        """The gate, which connected (poll said so) and waits for the host's word."""
        connection, _ = self._socket.accept()
        return GateConnection(connection)


class GateConnection:
    """The gate, connected: its pid (as this machine numbers it: the process that becomes the program) and
    the one word it waits for."""

    def __init__(self, connection: socket.socket):
        self._connection = connection
        credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        self.pid, _uid, _gid = struct.unpack("3i", credentials)

    def say_traced(self) -> None:
        """The gate is traced already (eBPF): it goes on to the program."""
        with self._connection as connection:
            connection.sendall(_HOST_TRACES)

    def close(self) -> None:
        """No word: the gate runs the program untraced."""
        self._connection.close()

    def receive_listener(self) -> int:
        """Ask the gate for a seccomp filter; return the listener fd it sent."""
        with self._connection as connection:
            connection.sendall(_HOST_WANTS_FILTER)
            message, fds, _, _ = socket.recv_fds(connection, 256, 1)
        if message != _GATE_SAYS_OK or not fds:
            for fd in fds:
                os.close(fd)
            raise LookupsUnavailable(message.decode(errors="replace") or "the gate closed its socket without a word")
        return fds[0]


class Supervisor:
    """lookupd answering a listener fd. Its stdout is the records; SIGTERM ends it."""

    def __init__(self, binary: Path, listener: int):
        try:
            self._process = subprocess.Popen(
                [str(binary), str(listener), str(os.getpid())], pass_fds=(listener,), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
            )
        finally:
            # lookupd holds the listener now; were it gone, a stopped call fails (ENOSYS) rather than hangs.
            os.close(listener)

    def fileno(self) -> int:
        return self._process.stdout.fileno()

    def read(self) -> bytes:
        """What lookupd wrote since the last read (poll said there is some); b"" once it has exited."""
        return os.read(self.fileno(), 64 * 1024)

    def finish(self) -> None:
        """Tell lookupd to write its call count and exit; its output stays readable until the end. A lookupd
        that has only just started is given the moment it takes to install its handler for that signal: it
        would die of it otherwise, its count unsaid."""
        deadline = time.monotonic() + HANDLER_WAIT
        while not catches_signal(self._process.pid, signal.SIGTERM) and time.monotonic() < deadline:
            if self._process.poll() is not None:
                return
            time.sleep(HANDLER_POLL)
        self._process.terminate()

    def close(self) -> int:
        """End lookupd (whatever it has not written yet is lost) and return its exit status."""
        self._process.terminate()
        self._process.stdout.close()
        return self._process.wait()
