"""Which TCP ports a container listens on, read from the host without speaking any protocol.

Connecting to the published port proves nothing: docker-proxy accepts on the host port even while nothing
listens in the container. The kernel knows better: /proc/<pid>/net/tcp and tcp6 list the sockets of the
network namespace of <pid>, so reading them for the container's first process (we run on the engine's
host, as tracing does) says which ports really listen, for redis as for nginx.
"""
from __future__ import annotations

import ipaddress
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from .interface import ContainerControl

LISTEN = "0A"  # TCP_LISTEN in the `st` column
SOCKET_TABLES = ("tcp", "tcp6")
# Seconds between two looks at the socket tables: short at first, as most servers listen within a few tens
# of milliseconds, then doubling up to POLL_INTERVAL for one that takes its time.
FIRST_POLL_INTERVAL = 0.01
POLL_INTERVAL = 0.1

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Socket = tuple[str, int]  # (address, port) of a listening socket, as RunOutcome.listening holds them


@dataclass(frozen=True)
class Listener:
    address: Address
    port: int

    @property
    def socket(self) -> Socket:
        return str(self.address), self.port

    @property
    def reachable(self) -> bool:
        """A published port reaches the container through its network interface, never its loopback."""
        mapped = getattr(self.address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback too
        return not (mapped or self.address).is_loopback


def parse_listeners(table: str) -> frozenset[Listener]:
    """The listening sockets of one /proc/net/tcp or tcp6 table (header line first, as the kernel writes it)."""
    found = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != LISTEN:
            continue
        address, _, port = fields[1].partition(":")
        found.add(Listener(_address(address), int(port, 16)))
    return frozenset(found)


def _address(hex_address: str) -> Address:
    """The kernel prints addresses as 32-bit words in its own byte order, each as 8 hex digits."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(
        int.from_bytes(raw[i : i + 4], sys.byteorder).to_bytes(4, "big") for i in range(0, len(raw), 4)
    )
    return ipaddress.ip_address(words)


def listeners(pid: int) -> frozenset[Listener] | None:
    """Listening sockets of the network namespace of `pid`; None when its tables cannot be read (gone)."""
    found: set[Listener] = set()
    for table in SOCKET_TABLES:
        try:
            with open(f"/proc/{pid}/net/{table}") as sockets:
                found |= parse_listeners(sockets.read())
        except FileNotFoundError:
            if table == "tcp":  # tcp6 is absent when IPv6 is disabled; tcp only when the process is gone
                return None
        except (ProcessLookupError, PermissionError):
            return None
    return frozenset(found)


@dataclass(frozen=True)
class Readiness:
    """What the wait for the container's ports saw when it ended."""

    ports: tuple[int, ...]  # the container ports waited for
    listening: frozenset[int] | None  # reachable listening ports; None: the sockets could not be observed
    loopback_only: frozenset[int] = frozenset()  # ports that listen on the container's loopback only
    seconds: float = 0.0  # how long the wait took (its bound, when ports are missing)
    exit_code: int | None = None  # the container exited while we waited
    sockets: tuple[Socket, ...] = ()  # other sockets waited for: those a run of the original listened on
    sockets_missing: tuple[Socket, ...] = ()  # of those, the ones that did not listen in time

    def describe(self) -> str:
        """How readiness was decided, for the report."""
        if not self.ports and not self.sockets:
            return "no port to wait for"
        if not self.observed:
            return "socket tables unreadable: waited for an answer on the port"
        waited = f"port{'s' if len(self.ports) > 1 else ''} {', '.join(map(str, self.ports))}" if self.ports else ""
        if self.sockets:
            every = f"the {len(self.sockets)} socket{'s' if len(self.sockets) > 1 else ''} the original listened on"
            listed = ", ".join(_socket_text(socket) for socket in self.sockets)
            waited = f"{waited} and {every} ({listed})" if waited else f"{every} ({listed})"
        if self.missing() or self.sockets_missing:
            absent = [*map(str, self.missing()), *map(_socket_text, self.sockets_missing)]
            return f"waited {self.seconds:.2f} s for {waited} in the kernel's socket tables; missing: {', '.join(absent)}"
        return f"{waited} listened after {self.seconds:.2f} s (kernel socket tables)"

    @property
    def observed(self) -> bool:
        return self.listening is not None

    def missing(self) -> tuple[int, ...]:
        return tuple(port for port in self.ports if self.listening is not None and port not in self.listening)

    def why_not(self, port: int) -> str:
        """Why `port` does not listen, in a few words; '' when it does or nothing could be observed."""
        if self.listening is None or port in self.listening:
            return ""
        if self.exit_code is not None:
            return f"container exited (code {self.exit_code}) before port {port} listened"
        if port in self.loopback_only:
            return (
                f"port {port} listens only on the container's loopback address, which a published port cannot"
                " reach (make the server listen on 0.0.0.0)"
            )
        others = sorted(self.listening - set(self.ports)) or sorted(self.listening)
        elsewhere = f"it listens on {', '.join(map(str, others))}" if others else "nothing listens"
        return f"port {port} did not listen in the container within {self.seconds:.3g} s ({elsewhere})"


def await_listening(
    engine: ContainerControl,
    container_id: str,
    ports: Iterable[int],
    timeout: float,
    read: Callable[[int], frozenset[Listener] | None] | None = None,
    sockets: Iterable[Socket] = (),
) -> Readiness:
    """Wait until every port in `ports` listens on a reachable address, and every one of `sockets` (any
    address, the loopback's too) listens, at most `timeout` seconds.

    Returns at once when the container exits (with its exit code) or when its sockets cannot be read
    (listening None: callers then fall back on talking to the port). `read` reads the listening sockets
    of a pid (default: `listeners`, looked up at call time).
    """
    read = read or listeners
    wanted = tuple(sorted(set(ports)))
    also = tuple(sorted(set(sockets)))
    if not wanted and not also:
        return Readiness(wanted, None)
    started = time.monotonic()
    interval = FIRST_POLL_INTERVAL
    while True:
        elapsed = time.monotonic() - started
        pid = engine.pid(container_id)
        found = read(pid) if pid is not None else None
        if found is None:
            if engine.is_running(container_id):
                return Readiness(wanted, None, seconds=elapsed, sockets=also)
            return Readiness(wanted, frozenset(), seconds=elapsed, exit_code=engine.wait(container_id, 0),
                             sockets=also, sockets_missing=also)
        reachable = frozenset(listener.port for listener in found if listener.reachable)
        absent = tuple(sorted(set(also) - {listener.socket for listener in found}))
        ready = set(wanted) <= reachable and not absent
        if ready or elapsed >= timeout:
            loopback = frozenset(listener.port for listener in found) - reachable
            return Readiness(wanted, reachable, loopback, seconds=elapsed if ready else timeout, sockets=also,
                             sockets_missing=absent)
        time.sleep(min(interval, max(0.0, timeout - elapsed)))
        interval = min(2 * interval, POLL_INTERVAL)


def _socket_text(socket: Socket) -> str:
    address, port = socket
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def listening_sockets(engine: ContainerControl, container_id: str) -> tuple[Socket, ...]:
    """Every socket that listens in the container now, loopback ones included (empty when it is gone)."""
    pid = engine.pid(container_id)
    found = listeners(pid) if pid is not None else None
    return tuple(sorted(listener.socket for listener in found or ()))
