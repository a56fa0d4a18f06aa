"""A command run inside the container."""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from slim.model import ProbeOutcome

from .base import Target, command_outcome


@dataclass(frozen=True)
class ExecProbe:
    argv: tuple[str, ...]
    user: str | None = None  # None: the container's user

    @property
    def name(self) -> str:
        return f"exec {shlex.join(self.argv)}"

    @property
    def ports(self) -> tuple[int, ...]:
        return ()

    def run(self, target: Target) -> ProbeOutcome:
        result = target.engine.exec(target.container_id, self.argv, user=self.user)
        return command_outcome(self.name, result.exit_code, result.output)
