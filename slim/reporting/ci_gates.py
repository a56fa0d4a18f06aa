"""CI gates: small rules over a build report that answer PASS, FAIL or SKIP with "measured vs threshold".

As in dive's CI mode, every gate is printed (an unset one as SKIP) and a tally line follows; any FAIL
makes the command exit with ExitCode.POLICY_FAILED (7), distinct from tool errors and verification.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from slim.build.sizes import human_size

from .report import VERIFIED, Report


class Status(enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class GateResult:
    gate: str  # the option that set it, e.g. "max-size"
    status: Status
    measured: str  # for people, e.g. "9.8 MB"
    threshold: str  # e.g. "<= 10.0 MB"
    why: str = ""  # for SKIP: why the gate did not apply

    def line(self) -> str:
        if self.status is Status.SKIP:
            return f"SKIP  {self.gate}: {self.why}"
        return f"{self.status.value}  {self.gate}: measured {self.measured}, threshold {self.threshold}"

    def as_dict(self) -> dict[str, str]:
        return {"gate": self.gate, "status": self.status.value, "measured": self.measured,
                "threshold": self.threshold, "why": self.why}


class Gate(Protocol):
    name: str

    def check(self, report: Report) -> GateResult: ...


@dataclass(frozen=True)
class MinRatio:
    """--fail-under-ratio: the original must be at least `minimum` times the slimmed size."""

    minimum: float | None
    name: str = "fail-under-ratio"

    def check(self, report: Report) -> GateResult:
        if self.minimum is None:
            return GateResult(self.name, Status.SKIP, "", "", "not set")
        ratio = report.reduction_ratio
        threshold = f">= {self.minimum:g}x"
        if ratio is None:
            return GateResult(self.name, Status.SKIP, "", threshold, "the report has no reduction ratio")
        status = Status.PASS if ratio >= self.minimum else Status.FAIL
        return GateResult(self.name, status, f"{ratio:g}x smaller", threshold)


@dataclass(frozen=True)
class MaxSize:
    """--max-size: the slimmed image (uncompressed, as the engine counts it) must not be larger."""

    maximum: int | None
    name: str = "max-size"

    def check(self, report: Report) -> GateResult:
        if self.maximum is None:
            return GateResult(self.name, Status.SKIP, "", "", "not set")
        size = report.result.size
        threshold = f"<= {self.maximum:,} bytes ({human_size(self.maximum)})"
        if size is None:
            return GateResult(self.name, Status.SKIP, "", threshold, "the report has no slimmed size")
        status = Status.PASS if size <= self.maximum else Status.FAIL
        return GateResult(self.name, status, f"{size:,} bytes ({human_size(size)})", threshold)


@dataclass(frozen=True)
class RequireVerified:
    """--require-verified: verification must have run and passed (a skipped one fails the gate)."""

    required: bool
    name: str = "require-verified"

    def check(self, report: Report) -> GateResult:
        if not self.required:
            return GateResult(self.name, Status.SKIP, "", "", "not set")
        status = report.verification.status
        return GateResult(self.name, Status.PASS if status == VERIFIED else Status.FAIL, status, VERIFIED)


@dataclass(frozen=True)
class GateOutcome:
    """The gates of one report, in a fixed order."""

    image: str
    results: tuple[GateResult, ...]

    @property
    def failed(self) -> bool:
        return any(r.status is Status.FAIL for r in self.results)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status is status)

    def tally(self) -> str:
        verdict = "FAIL" if self.failed else "PASS"
        return (
            f"Result: {verdict} [Total:{len(self.results)}] [Passed:{self.count(Status.PASS)}] "
            f"[Failed:{self.count(Status.FAIL)}] [Skipped:{self.count(Status.SKIP)}]"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "result": "FAIL" if self.failed else "PASS",
            "gates": [r.as_dict() for r in self.results],
        }


def gates_from_options(min_ratio: float | None, max_size: int | None, require_verified: bool) -> tuple[Gate, ...]:
    """The gates the options asked for; none at all when no option was given (nothing is printed then)."""
    if min_ratio is None and max_size is None and not require_verified:
        return ()
    return (MinRatio(min_ratio), MaxSize(max_size), RequireVerified(require_verified))


def evaluate(gates: Sequence[Gate], report: Report) -> GateOutcome:
    image = report.source.ref
    return GateOutcome(image, tuple(gate.check(report) for gate in gates))
