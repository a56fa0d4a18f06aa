"""Errors users see as one line, each family with its own documented exit code.

Foreign exceptions (docker SDK, OSError from the kernel) are translated into these at the edges
(slim/adapters), so the CLI only ever has to render a SlimError.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import click

from .safe_text import printable


class ExitCode:
    OK = 0
    TOOL_ERROR = 1  # slimtrace failed (a bug, or the host cannot trace)
    USAGE = 2  # bad command line (click's own code)
    IMAGE_NOT_FOUND = 3  # or removed or changed while a build read it in place
    ENGINE_UNREACHABLE = 4
    APPLICATION_FAILED = 5  # the ORIGINAL image misbehaved: exited non-zero, never listened, probe failed
    VERIFICATION_FAILED = 6  # the slimmed image does not behave like the original
    POLICY_FAILED = 7  # a CI gate (--max-size, --fail-under-ratio, ...) failed
    CANNOT_TRACE = 8  # this host or engine cannot trace: not root, remote engine, storage that is not overlay
    NO_SPACE = 9  # a file system slimtrace writes to filled up
    INTERRUPTED = 130  # Ctrl-C / SIGTERM, after cleanup


class SlimError(click.ClickException):
    """Root of our errors: click prints `Error: <message>` and exits with `exit_code`."""

    exit_code = ExitCode.TOOL_ERROR

    def format_message(self) -> str:
        # Messages quote image content (container output, file names): never terminal commands.
        return printable(self.message, one_line=True)


class UsageError(SlimError):
    exit_code = ExitCode.USAGE


class ImageNotFound(SlimError):
    exit_code = ExitCode.IMAGE_NOT_FOUND

    def __init__(self, ref: str):
        super().__init__(f"image {ref!r} not found in the local engine (slimtrace never pulls)")
        self.ref = ref


class EngineUnreachable(SlimError):
    exit_code = ExitCode.ENGINE_UNREACHABLE

    def __init__(self, why: str):
        super().__init__(f"cannot reach the Docker engine: {why}")


class ApplicationFailed(SlimError):
    """The original image did not run as expected, so there is nothing trustworthy to slim."""

    exit_code = ExitCode.APPLICATION_FAILED


class VerificationFailed(SlimError):
    exit_code = ExitCode.VERIFICATION_FAILED


class PolicyFailed(SlimError):
    exit_code = ExitCode.POLICY_FAILED


class ContainerStartFailed(SlimError):
    """The engine could not start a container (its entrypoint is missing, say). Verification treats it as
    the slimmed image's behaviour, not as a tool error."""

    def __init__(self, why: str):
        super().__init__(f"the container did not start: {why}")
        self.why = why


class TracingUnavailable(SlimError):
    """The host cannot trace: not root, no fanotify, no compiler, storage that is not overlay, an engine on
    another machine."""

    exit_code = ExitCode.CANNOT_TRACE



class NoSpace(SlimError):
    """ENOSPC, named: which directory filled up and what a build needs there."""

    exit_code = ExitCode.NO_SPACE

    def __init__(self, directory: Path):
        free = shutil.disk_usage(directory).free if directory.exists() else 0
        super().__init__(
            f"no space left in {directory} ({free / 1e6:.1f} MB free): a build spools the saved image there and "
            f"writes the slimmed layer, about twice the image's size; free space or point TMPDIR elsewhere"
        )
        self.directory = directory
