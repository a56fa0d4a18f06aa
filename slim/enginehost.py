"""Can this engine be traced from here? Decided up front, before anything runs, from what the engine says
about itself.

Tracing needs this machine's kernel: fanotify marks the container's filesystem, /proc/PID/root reaches it,
and a timed-out exec is killed by its host pid. An engine elsewhere (`DOCKER_HOST=tcp://other-host:2376`,
`ssh://...`, a forwarded socket) cannot be traced, whatever the URL looks like: a TCP socket on 127.0.0.1
is this machine. So the engine's own description of its machine is compared with ours.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import TracingUnavailable

# Storage whose container root is an overlay mounted for that container alone (see fanotify_tracer.require_own_overlay).
OVERLAY_DRIVERS = frozenset({"overlay2", "overlayfs", "overlay"})  # Docker, containerd snapshotter, Podman
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class EngineHost:
    """The machine an engine runs on, as `docker info` describes it, and how it stores containers."""

    hostname: str
    kernel: str
    memory: int  # bytes
    storage_driver: str


def this_machine() -> EngineHost:
    """This machine, to compare an engine's with (it has no storage driver of its own)."""
    uname = os.uname()
    return EngineHost(uname.nodename, uname.release, _memory_total(), storage_driver="")


def _memory_total() -> int:
    for line in MEMINFO.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def require_local(engine: EngineHost, here: EngineHost) -> None:
    """Refuse an engine whose machine is not this one: another host name, kernel or memory size."""
    differences = [
        f"{what} {theirs!r}, here {ours!r}"
        for what, theirs, ours in (
            ("host name", engine.hostname, here.hostname),
            ("kernel", engine.kernel, here.kernel),
            ("memory", engine.memory, here.memory),
        )
        if theirs != ours
    ]
    if differences:
        raise TracingUnavailable(
            f"the Docker engine runs on another machine ({'; '.join(differences)}): tracing needs the engine's"
            " kernel, so run slimtrace on the engine's host"
        )


def require_traceable_storage(engine: EngineHost) -> None:
    if engine.storage_driver not in OVERLAY_DRIVERS:
        raise TracingUnavailable(
            f"the engine stores containers with the {engine.storage_driver!r} storage driver: tracing needs overlay"
            " storage (Docker's overlay2, the containerd store's overlayfs snapshotter, Podman's overlay)"
        )
