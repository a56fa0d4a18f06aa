"""What a trace needs from the kernel, as a Protocol: see every file a started container opens.

Stages depend on this, never on fanotify; `slim.adapters.fanotify_tracer.FanotifyTracer` is the one
implementation, passed into the pipeline as the engine is.
"""
from __future__ import annotations

from pathlib import Path
from typing import ContextManager, Protocol

from .model import TracedPath, TraceHealth


class PathRecorder(Protocol):
    """Records on its own thread from `watch` on; leaving it as a context manager stops it."""

    def __enter__(self) -> PathRecorder: ...

    def __exit__(self, *exc: object) -> None: ...

    def set_phase(self, name: str) -> None:
        """Label the files first seen from now on (e.g. with the probe that is running)."""
        ...

    def last_news(self) -> float:
        """time.monotonic() when a new path, or a new access to one, was last recorded."""
        ...

    def so_far(self) -> tuple[TracedPath, ...]:
        """The paths recorded until now, as stop() would return them, while recording goes on."""
        ...

    def stop(self) -> tuple[tuple[TracedPath, ...], TraceHealth]:
        """What was seen, one TracedPath per path, sorted; and how complete the record is."""
        ...


class TraceSession(Protocol):
    def watch(self, root: Path, phase: str) -> PathRecorder:
        """Record every open under `root`, a started container's root filesystem (refused unless it is the
        container's own), labelling the first files with `phase`."""
        ...


class Tracer(Protocol):
    def session(self) -> ContextManager[TraceSession]:
        """Opened before the container exists, so a kernel that cannot trace fails before anything runs."""
        ...
