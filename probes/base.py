"""What every probe shares: the target it exercises, the Probe protocol, and the command fingerprint."""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Mapping, Protocol

from .interface import ContainerControl, ProbeOutcome
from .listening import Readiness

# The only address probes ever talk to: containers publish their ports on the host's loopback.
LOOPBACK = "127.0.0.1"

DETAIL_WIDTH = 100


@dataclass(frozen=True)
class Target:
    """A running container to exercise."""

    engine: ContainerControl
    container_id: str
    host: str  # LOOPBACK
    ports: Mapping[int, int]  # container TCP port -> host port on `host`
    # time.monotonic() after which probes stop waiting: the run's overall budget for probes.
    deadline: float = math.inf
    # What the wait for the container's ports saw before the probes ran; None: there was no such wait.
    readiness: Readiness | None = None

    def seconds_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


class Probe(Protocol):
    @property
    def name(self) -> str:
        """Stable and unique in a run: verification pairs outcomes of two runs by it."""
        ...

    @property
    def ports(self) -> tuple[int, ...]:
        """Container TCP ports the container must publish for this probe."""
        ...

    def run(self, target: Target) -> ProbeOutcome: ...


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def command_outcome(name: str, exit_code: int, output: bytes, said: bytes | None = None) -> ProbeOutcome:
    """Outcome of a command: ok when it exits 0; `output` is fingerprinted, `said` (default: the same)
    is what the detail quotes."""
    return ProbeOutcome(
        probe=name,
        ok=exit_code == 0,
        detail=f"exit {exit_code}: {last_line(output if said is None else said)}",
        fingerprint={"exit_code": exit_code, "sha256": sha256(output)},
    )


def last_line(output: bytes) -> str:
    """The last non-blank line, shortened: the result of a command, or its error, is usually there."""
    lines = output.decode("utf-8", "replace").strip().splitlines()
    if not lines:
        return "no output"
    line = lines[-1].strip()
    return line if len(line) <= DETAIL_WIDTH else line[: DETAIL_WIDTH - 3] + "..."
