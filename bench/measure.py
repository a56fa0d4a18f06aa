"""Run `slim build` as a child process and measure it: wall time, peak RSS, the JSON report.

A child process isolates the measurement: its peak resident set is the slim process's own (os.wait4 gives
the rusage of that one child, unlike RUSAGE_CHILDREN, which keeps the maximum over every child so far).

The child runs slimtrace from a snapshot of slim/ and probes/ taken when the run started, so every build
of a run measures the same code even while the work tree is being edited.
"""
from __future__ import annotations

import compileall
import json
import os
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from .model import BuildMeasurement

# Generous: the 5 GB synthetic image takes a few minutes on 2 cores; a hung build must still end.
BUILD_TIMEOUT = 3600.0
KILL_AFTER = 30.0  # seconds after SIGTERM


def snapshot_sources(root: Path, into: Path) -> Path:
    """Copy the packages `python -m slim` imports from `root` into `into`, byte-compiled as `pip install`
    leaves an installed package (each build would otherwise compile them again where bytecode is not
    written, PYTHONDONTWRITEBYTECODE: a tenth of a second of start-up no user pays); returns `into`."""
    for package in ("slim", "probes"):
        shutil.copytree(root / package, into / package, ignore=shutil.ignore_patterns("__pycache__"))
        if not compileall.compile_dir(into / package, quiet=1):
            raise RuntimeError(f"byte-compiling the snapshot of {package} failed")
    return into


def slim_build(
    source: Path, image: str, tag: str, report_path: Path, extra_args: Sequence[str] = ()
) -> BuildMeasurement:
    """`python -m slim build IMAGE --tag TAG --report REPORT_PATH EXTRA_ARGS`, with slim from `source`, measured."""
    argv = [sys.executable, "-m", "slim", "build", image, "--tag", tag, "--report", str(report_path), *extra_args]
    report_path.unlink(missing_ok=True)
    # `-m` puts the working directory first on sys.path: the snapshot's slim wins over the installed one.
    exit_code, wall, peak_rss, output = run_measured(argv, BUILD_TIMEOUT, cwd=source)
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    error = None if exit_code == 0 else _error_line(output, exit_code)
    return BuildMeasurement(exit_code, wall, peak_rss, report, error)


def run_measured(argv: Sequence[str], timeout: float, cwd: Path | None = None) -> tuple[int, float, int, str]:
    """Run argv to completion; return (exit code, wall seconds, peak RSS in bytes, stdout+stderr).

    On timeout the child gets SIGTERM (slim then cleans up like Ctrl-C), SIGKILL 30 s later.
    """
    with tempfile.TemporaryFile() as output:
        started = time.monotonic()
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, cwd=cwd,
            env={**os.environ, "COLUMNS": "200"},  # fewer wrapped lines in what we quote
        )
        status, rusage = _wait(child, started + timeout)
        wall = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        output.seek(0)
        text = output.read().decode("utf-8", "replace")
    return child.returncode, wall, rusage.ru_maxrss * 1024, text  # Linux reports ru_maxrss in KiB


def _wait(child: subprocess.Popen, deadline: float) -> tuple[int, resource.struct_rusage]:
    """The child's exit, seen the moment it happens (through a pidfd: a poll every so often would add up to
    its interval to the wall time); past the deadline it gets SIGTERM (slim then cleans up as on Ctrl-C),
    and SIGKILL if it is still there KILL_AFTER seconds later."""
    descriptor = os.pidfd_open(child.pid)
    try:
        if not _exits(descriptor, deadline - time.monotonic()):
            child.terminate()
            if not _exits(descriptor, KILL_AFTER):
                child.kill()
        _, status, rusage = os.wait4(child.pid, 0)
        return status, rusage
    finally:
        os.close(descriptor)


def _exits(pidfd: int, seconds: float) -> bool:
    """Whether the process exits within `seconds` (a pidfd becomes readable when it has)."""
    return bool(select.select([pidfd], [], [], max(0.0, seconds))[0])


def _error_line(output: str, exit_code: int) -> str:
    lines = output.splitlines()
    starts = [number for number, line in enumerate(lines) if line.startswith("Error:")]
    if starts:  # the message may be wrapped over several lines
        return " ".join(line.strip() for line in lines[starts[-1]:])[:300]
    tail = [line.strip() for line in output.splitlines() if line.strip()]
    return f"exit {exit_code}: {tail[-1][:300] if tail else 'no output'}"
