"""Command line: parse argv into option values, call the pipeline, render. No logic lives here."""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import sys
from pathlib import Path, PurePosixPath

import click
from rich.console import Console

from . import __version__
from .engine import BindMount
from .errors import ExitCode
from .pipeline import BuildOptions, RunOptions

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- parameter types


class CommandLine(click.ParamType):
    """A command given as one shell-quoted string: "redis-cli -p 6379 ping"."""

    name = "COMMAND"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            argv = tuple(shlex.split(value))
        except ValueError as e:
            self.fail(f"{value!r}: {e}", param, ctx)
        if not argv:
            self.fail("empty command", param, ctx)
        return argv


class EnvAssignment(click.ParamType):
    name = "KEY=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        key, sep, val = value.partition("=")
        if not sep or not key:
            self.fail(f"{value!r} is not KEY=VALUE", param, ctx)
        return key, val


class MountSpec(click.ParamType):
    name = "HOST:CONTAINER[:ro|rw]"

    def convert(self, value, param, ctx):
        if isinstance(value, BindMount):
            return value
        parts = value.split(":")
        mode = parts.pop() if len(parts) == 3 else "rw"
        if len(parts) != 2 or mode not in ("ro", "rw") or not parts[1].startswith("/"):
            self.fail(f"{value!r} is not HOST:CONTAINER[:ro|rw] with an absolute CONTAINER path", param, ctx)
        source = Path(parts[0]).resolve()
        if not source.exists():
            self.fail(f"{parts[0]!r} does not exist on this host", param, ctx)
        return BindMount(str(source), parts[1], read_only=mode == "ro")


class ContinueAfter(click.ParamType):
    name = "probes|exit|SECONDS"

    def convert(self, value, param, ctx):
        if value in ("probes", "exit"):
            return value
        try:
            if float(value) >= 0:
                return value
        except ValueError:
            pass
        self.fail(f"{value!r}: use probes, exit or a number of seconds", param, ctx)


class ImagePath(click.ParamType):
    """An absolute path inside the image."""

    name = "PATH"

    def convert(self, value, param, ctx):
        if not value.startswith("/"):
            self.fail(f"{value!r} must be an absolute path inside the image", param, ctx)
        return PurePosixPath(os.path.normpath(value))


# ---------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="slimtrace")
def cli() -> None:
    """slimtrace: make container images small by tracing what the application really uses,
    then prove the slimmed image still behaves like the original."""


def run_options(function):
    """Options shared by `build` and `verify`: how the application is run and probed."""
    decorators = [
        click.option("--http-port", "http_ports", type=click.IntRange(1, 65535), multiple=True,
                     help="Probe this container TCP port over HTTP instead of the exposed ones. Repeatable."),
        click.option("--exec", "exec_probes", type=CommandLine(), multiple=True,
                     help='Run a command inside the running container as a probe, e.g. --exec "redis-cli ping". '
                          "Repeatable."),
        click.option("--host-exec", "host_probes", multiple=True,
                     help="Run a shell command on this host as a probe while the container runs; it gets "
                          "SLIM_TARGET_HOST and SLIM_TARGET_PORT_<port>. Repeatable."),
        click.option("--probe-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="YAML file of HTTP requests (with expected status), exec and host probes."),
        click.option("--cmd", type=CommandLine(), help="Run with this command instead of the image's Cmd "
                                                       "(the slimmed image keeps the original Cmd)."),
        click.option("--env", "env", type=EnvAssignment(), multiple=True,
                     help="Environment variable for the runs, KEY=VALUE. Repeatable."),
        click.option("--user", help="Run as this user (the slimmed image keeps the original User)."),
        click.option("--network", help="Docker network for the runs (default: the engine's bridge)."),
        click.option("--mount", "mounts", type=MountSpec(), multiple=True,
                     help="Bind mount for the runs, HOST:CONTAINER[:ro|rw]. Repeatable."),
        click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
                     help="Seconds a batch run may take, and the budget for probes of a server."),
        click.option("--ready-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
                     help="Seconds to wait for a server to listen on its ports before probing, and for a "
                          "failing --exec probe to start passing (pg_isready right after start)."),
        click.option("--continue-after", type=ContinueAfter(), default="probes", show_default=True,
                     help="When to stop a server run: after the probes, when it exits, or after SECONDS more."),
        click.option("--probe-failure", type=click.Choice(["error", "warn"]), default="error", show_default=True,
                     help="What to do when a probe fails on the ORIGINAL image."),
    ]
    for decorate in reversed(decorators):
        function = decorate(function)
    return function


def _run_options(kwargs) -> RunOptions:
    return RunOptions(
        cmd=kwargs["cmd"],
        env=dict(kwargs["env"]),
        user=kwargs["user"],
        network=kwargs["network"],
        mounts=tuple(kwargs["mounts"]),
        http_ports=tuple(kwargs["http_ports"]),
        exec_probes=tuple(kwargs["exec_probes"]),
        host_probes=tuple(kwargs["host_probes"]),
        probe_file=kwargs["probe_file"],
        timeout=kwargs["timeout"],
        ready_timeout=kwargs["ready_timeout"],
        continue_after=kwargs["continue_after"],
        probe_failure=kwargs["probe_failure"],
    )


@cli.command()
@click.argument("image")
@click.option("--tag", help="Tag for the slimmed image (default: REPO.slim:TAG).")
@click.option("--include-path", "include_paths", type=ImagePath(), multiple=True,
              help="Always keep this file or directory (with everything below it). Repeatable.")
@click.option("--exclude-path", "exclude_paths", type=ImagePath(), multiple=True,
              help="Never keep this file or directory, even if the run used it. Repeatable.")
@run_options
@click.option("--no-verify", is_flag=True, help="Skip verification (the report says it was skipped).")
@click.option("--keep-unverified", is_flag=True,
              help="Tag the slimmed image even when verification finds a difference (exit code stays 6).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the JSON report (default: ./<image>.slim-report.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout instead of a summary.")
def build(image, tag, include_paths, exclude_paths, no_verify, keep_unverified, report_path, as_json, **kwargs):
    """Slim IMAGE: run it traced, keep what it uses, verify, tag the result.

    Example: slim build nginx:latest --tag nginx:slim
    """
    from .adapters.engine import DockerEngine
    from .pipeline import build as run_build
    from .render import render_summary

    options = BuildOptions(
        image=image,
        tag=tag,
        include_paths=tuple(include_paths),
        exclude_paths=tuple(exclude_paths),
        run=_run_options(kwargs),
        verify=not no_verify,
        keep_unverified=keep_unverified,
        report_path=report_path,
    )
    with _progress() as on_stage:
        result = run_build(DockerEngine(), options, on_stage)
    if as_json:
        click.echo(json.dumps(result.report.data, indent=2))
    else:
        render_summary(out_console, result.report, result.report_path)


@cli.command()
@click.argument("original")
@click.argument("slimmed")
@run_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout instead of a table.")
def verify(original, slimmed, as_json, **kwargs):
    """Check that SLIMMED behaves like ORIGINAL: the same probes against both (exit 0 when equal, 6 when not).

    SLIMMED runs with ORIGINAL's command and the run options given, as `slim build` verifies its result.

    Example: slim verify nginx:latest nginx.slim:latest --exec "nginx -t"
    """
    from .adapters.engine import DockerEngine
    from .errors import VerificationFailed
    from .pipeline import VerifyOptions, verify_images

    options = VerifyOptions(original=original, slimmed=slimmed, run=_run_options(kwargs))
    with _progress() as on_stage:
        result = verify_images(DockerEngine(), options, on_stage)
    verification = result.verification
    if as_json:
        click.echo(json.dumps(_verify_data(result), indent=2))
    else:
        _render_verification(result)
    if not verification.passed:
        raise VerificationFailed(f"{slimmed} does not behave like {original} ({verification.summary()})")


def _verify_data(result) -> dict:
    def image(facts):
        return {"ref": facts.ref, "id": facts.id, "size": facts.size}

    verification = result.verification
    return {
        "original": image(result.original),
        "slimmed": image(result.slimmed),
        # The same shape as the verification section of a build report.
        "verification": {"status": "passed" if verification.passed else "failed", **dataclasses.asdict(verification)},
        "timings": dict(result.timings),
    }


def _render_verification(result) -> None:
    verification = result.verification
    for comparison in verification.comparisons:
        mark = "[green]same[/]" if comparison.same else "[bold red]DIFFERS[/]"
        out_console.print(f"{mark}  {comparison.probe}: original {comparison.original} / slimmed {comparison.slimmed}")
    for problem in verification.invariant_failures:
        out_console.print(f"[bold red]invariant[/]  {problem}")
    checks = len(verification.comparisons)
    verdict = "[bold green]passed[/]" if verification.passed else "[bold red]FAILED[/]"
    out_console.print(f"verification: {verdict} ({checks} checks, {len(verification.invariant_failures)} "
                      f"invariant failures; {result.original.ref} -> {result.slimmed.ref})")


class _progress:
    """A spinner per stage on a terminal; plain `==> stage` lines in CI logs."""

    def __enter__(self):
        self._status = err_console.status("") if err_console.is_terminal else None
        if self._status:
            self._status.start()
        return self.on_stage

    def on_stage(self, name: str) -> None:
        if self._status:
            self._status.update(f"{name}…")
        else:
            err_console.print(f"==> {name}")

    def __exit__(self, *exc) -> None:
        if self._status:
            self._status.stop()


# ---------------------------------------------------------------- entry point


def main() -> None:
    """Run the CLI with our exit-code contract: one `Error:` line, never a traceback for user errors."""
    signal.signal(signal.SIGTERM, _interrupt)
    # A shell starts background jobs with SIGINT ignored; we still want Ctrl-C/kill -INT to clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = cli.main(prog_name="slim", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        code = e.exit_code
    except click.Abort:
        err_console.print("Error: interrupted; everything slimtrace created was removed")
        code = ExitCode.INTERRUPTED
    except Exception as e:  # a bug: say it in one line unless asked for details
        if os.environ.get("SLIM_DEBUG"):
            raise
        err_console.print(f"Error: internal error: {type(e).__name__}: {e} (SLIM_DEBUG=1 shows the traceback)")
        code = ExitCode.TOOL_ERROR
    sys.exit(code if isinstance(code, int) else 0)


def _interrupt(signum, frame):
    """SIGTERM (CI cancelling a job) cleans up exactly like Ctrl-C."""
    raise KeyboardInterrupt

