"""Facts about the machine a run measured on, so results from different machines are not compared blindly."""
from __future__ import annotations

import hashlib
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


def describe(client: docker.DockerClient, source: Path) -> Machine:
    """The machine, and the slimtrace measured: the commit it came from and the digest of `source`."""
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
        source_digest=source_digest(source),
    )


def source_digest(root: Path) -> str:
    """sha256 (12 hex digits) over the Python and C sources of slim/ and probes/ under `root`.

    Names the code measured even when it is not a commit (a dirty tree, or a snapshot copied elsewhere).
    """
    digest = hashlib.sha256()
    files = sorted(path for package in ("slim", "probes") for pattern in ("*.py", "*.c")
                   for path in (root / package).rglob(pattern))
    for path in files:
        for part in (path.relative_to(root).as_posix().encode(), path.read_bytes()):
            digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()[:12]


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
    # Only slimtrace's own code counts: bench's results and docs changing do not make the measurement dirty.
    return f"{head}+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", "slim", "probes") else head
