"""A command line run on the host, pointed at the container's published ports through the environment."""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Mapping

from .base import Target, command_outcome
from .interface import ProbeOutcome


@dataclass(frozen=True)
class HostExecProbe:
    command: str  # a shell command line, as users write it
    timeout: float = 120.0

    @property
    def name(self) -> str:
        return f"host {self.command}"

    @property
    def ports(self) -> tuple[int, ...]:
        return ()

    def run(self, target: Target) -> ProbeOutcome:
        timeout = min(self.timeout, target.seconds_left())
        # A session of its own, so a timeout kills the whole pipeline the shell started, not just the shell.
        with subprocess.Popen(
            self.command,
            shell=True,
            env={**os.environ, **target_env(target.host, target.ports)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        ) as process:
            try:
                stdout, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return ProbeOutcome(self.name, False, f"still running after {timeout:.3g} s, killed")
        failed = process.returncode != 0
        return command_outcome(self.name, process.returncode, stdout, said=(stderr or stdout) if failed else None)


def target_env(host: str, ports: Mapping[int, int]) -> dict[str, str]:
    """SLIM_TARGET_HOST, and SLIM_TARGET_PORT_<container port>=<host port> for every published port."""
    published = {f"SLIM_TARGET_PORT_{inner}": str(outer) for inner, outer in ports.items()}
    return {"SLIM_TARGET_HOST": host, **published}
