"""A command run inside the container, retried until it succeeds while the application starts up."""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, replace

from .base import Target, command_outcome
from .interface import ProbeOutcome

RETRY_INTERVAL = 0.5  # seconds between two attempts
# The command itself is missing or not executable: retrying cannot help (sh and docker exec both say so).
NOT_RETRIED = (126, 127)


@dataclass(frozen=True)
class ExecProbe:
    """`pg_isready` or `redis-cli ping` right after start fails until the server is up, so a failing
    attempt is retried for up to `ready_timeout` seconds; the outcome is the last attempt's."""

    argv: tuple[str, ...]
    user: str | None = None  # None: the container's user
    ready_timeout: float = 30.0  # seconds during which a failing command is tried again
    timeout: float = 60.0  # seconds one attempt may take before it is given up

    @property
    def name(self) -> str:
        return f"exec {shlex.join(self.argv)}"

    @property
    def ports(self) -> tuple[int, ...]:
        return ()

    def run(self, target: Target) -> ProbeOutcome:
        retry_until = min(time.monotonic() + self.ready_timeout, target.deadline)
        attempts = 0
        while True:
            attempts += 1
            timeout = max(0.0, min(self.timeout, target.seconds_left()))
            result = target.engine.exec(target.container_id, self.argv, user=self.user, timeout=timeout)
            if result.timed_out:
                return ProbeOutcome(self.name, False, f"still running after {timeout:.3g} s, killed")
            outcome = command_outcome(self.name, result.exit_code, result.output)
            last = outcome.ok or result.exit_code in NOT_RETRIED or time.monotonic() + RETRY_INTERVAL > retry_until
            if last or not target.engine.is_running(target.container_id):
                return replace(outcome, detail=f"{outcome.detail} (attempt {attempts})") if attempts > 1 else outcome
            time.sleep(RETRY_INTERVAL)
