"""Facts about the machine a run measured on, so results from different machines are not compared blindly."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import docker

import slim
from slim import __version__

from .model import Machine

# The checkout whose slimtrace is measured (the one `python -m slim` imports), not necessarily bench's own.
SLIM_ROOT = Path(slim.__file__).resolve().parent.parent


def describe(client: docker.DockerClient) -> Machine:
    info = client.info()
    return Machine(
        cores=os.cpu_count() or 0,
        memory_bytes=_memory_bytes(),
        kernel=platform.release(),
        os=_os_name(),
        engine_version=str(client.version().get("Version", "unknown")),
        storage_driver=str(info.get("Driver", "unknown")),
        python=platform.python_version(),
        slimtrace_version=__version__,
        commit=_commit(),
    )


def _memory_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
    except OSError:
        return "Linux"


def _commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(SLIM_ROOT), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short=12", "HEAD")
    if not head:
        return f"unknown (slimtrace from {SLIM_ROOT}, not a git checkout)"
    return f"{head}+dirty" if git("status", "--porcelain", "--untracked-files=no") else head
