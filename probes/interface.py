"""What probes need from the program that runs them, and what they give back: probes import nothing else.

slim satisfies ContainerControl with its engine (slim.engine.Engine) and turns ProbeInputError into its
usage error (exit 2); slim.model builds its run results from ProbeOutcome.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol


class ProbeInputError(ValueError):
    """A probe file or an OpenAPI document that cannot be used; the message names the file and the entry."""


class CommandResult(Protocol):
    exit_code: int  # -1 when it timed out
    output: bytes
    timed_out: bool


class ContainerControl(Protocol):
    """The few engine calls probes make on the container they exercise."""

    def exec(
        self, container_id: str, argv: tuple[str, ...], user: str | None = None, timeout: float | None = None
    ) -> CommandResult: ...

    def is_running(self, container_id: str) -> bool: ...

    def wait(self, container_id: str, timeout: float) -> int | None: ...

    def pid(self, container_id: str) -> int | None: ...


@dataclass(frozen=True)
class Volatile:
    """A fingerprint entry that differed between two runs of the original: what of it stays comparable."""

    compared: str  # for people: "status, content type, JSON keys and 2 of 5 values"
    fields: Mapping[str, Any] = field(default_factory=dict)  # fingerprint fields equal in both runs (status)
    parts: Mapping[str, str] = field(default_factory=dict)  # digests of body parts equal in both runs
    optional: bool = False  # seen in one run only (a link on a volatile page): its absence is no difference


@dataclass(frozen=True)
class ProbeOutcome:
    """What one probe observed. `fingerprint` is what verification compares between two images."""

    probe: str  # stable name, e.g. "http GET :80/"
    ok: bool
    detail: str  # one line for people: "200, 612 bytes" or the failure
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    # Per fingerprint key, digests of parts of what was observed ("type", "json keys", "json /a/0",
    # "html structure"): what stays comparable when the whole differs between two runs. Not reported.
    parts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Per fingerprint key that differed between two runs of the original (learned, never guessed).
    volatile: Mapping[str, Volatile] = field(default_factory=dict)
    readiness: str = ""  # how the probe decided that the application was ready ("" when it did not wait)
