"""The gate binary (gate.c) and the lookup supervisor (lookupd.c), compiled with the host's C compiler on
first use and cached.

It is built static because it runs inside images that may have no libc at all (FROM scratch). The
cache file is named by the source's sha256, so editing gate.c rebuilds it and concurrent slimtrace
runs agree on one file (each writes a private temp name, then renames atomically).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from slim.errors import TracingUnavailable

_INSTALL_HINT = "install gcc and libc6-dev"


def gate_binary() -> Path:
    """Path of the compiled gate for the current gate.c, building it if the cache lacks it."""
    return _cached_binary("gate")


def lookupd_binary() -> Path:
    """Path of the compiled lookup supervisor (lookupd.c), built like the gate."""
    return _cached_binary("lookupd")


def _cached_binary(name: str) -> Path:
    source = resources.files(__package__).joinpath(f"{name}.c").read_bytes()
    binary = cache_dir() / f"{name}-{hashlib.sha256(source).hexdigest()}"
    if not binary.exists():
        _compile(source, binary)
    return binary


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "slimtrace"


def _compile(source: bytes, binary: Path) -> None:
    compiler = shutil.which("cc")
    if compiler is None:
        raise TracingUnavailable(f"building the trace gate needs a C compiler: {_INSTALL_HINT}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{binary.name}.", dir=binary.parent)
    os.close(fd)
    try:
        built = subprocess.run(
            [compiler, "-static", "-Os", "-s", "-o", partial, "-x", "c", "-"],
            input=source,
            capture_output=True,
        )
        if built.returncode != 0:
            first_error = (built.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[0]
            raise TracingUnavailable(f"building the trace gate failed ({first_error}): {_INSTALL_HINT}")
        os.chmod(partial, 0o755)
        os.replace(partial, binary)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
