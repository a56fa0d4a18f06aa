"""Command line: parse argv into option values, call the pipeline, render. No logic lives here."""
from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from pathlib import Path, PurePosixPath
from typing import NoReturn

import click
from rich.console import Console

from probes.openapi import METHODS

from . import __version__
from .adapters.docker_engine import DockerEngine
from .adapters.fanotify_tracer import FanotifyTracer
from .build.sizes import parse_size
from .engine import ULIMIT_NAMES, BindMount, Ulimit
from .errors import ExitCode, PolicyFailed, SlimError, VerificationFailed
from .ownership import collect_garbage, raise_interrupt
from .pipeline import BuildOptions, RunOptions, VerifyOptions, build as run_build, verify_images
from .references import normalised_tag
from .reporting.ci_gates import evaluate, gates_from_options
from .reporting.comparison import compare
from .reporting.explanation import explain as explain_path
from .reporting.json_tree import to_json
from .reporting.render_explain import render_explanation
from .reporting.render_html import render_html
from .reporting.render_report import gate_lines, render_markdown, render_text
from .reporting.render_summary import render_summary
from .reporting.render_xray import render_xray
from .reporting.report import InvalidReport, Report, verification_section
from .reporting.xray import xray as analyse_image
from .rules.app_files import APP_FILES_MODES
from .rules.table import RULE_NAMES, RULES
from .safe_text import console as safe
from .safe_text import printable

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


class UlimitSpec(EnvAssignment):
    """NAME=SOFT[:HARD] as `docker run --ulimit` takes it; -1 is unlimited."""

    name = "NAME=SOFT[:HARD]"

    def convert(self, value, param, ctx):
        if isinstance(value, Ulimit):
            return value
        name, limits = super().convert(value, param, ctx)
        soft, _, hard = limits.partition(":")
        try:
            ulimit = Ulimit(name, int(soft), int(hard or soft))
        except ValueError:
            self.fail(f"{value!r} is not NAME=SOFT[:HARD] with whole numbers", param, ctx)
        if name not in ULIMIT_NAMES:
            self.fail(f"{value!r}: {name!r} is not one of {', '.join(ULIMIT_NAMES)}", param, ctx)
        if min(ulimit.soft, ulimit.hard) < -1 or (ulimit.hard != -1 and not 0 <= ulimit.soft <= ulimit.hard):
            self.fail(f"{value!r}: the soft limit must not exceed the hard one (-1 is unlimited)", param, ctx)
        return ulimit


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


class MethodList(click.ParamType):
    """HTTP methods, comma-separated: "GET,HEAD,POST"."""

    name = "METHODS"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value

        methods = tuple(dict.fromkeys(method.strip().upper() for method in value.split(",") if method.strip()))
        unknown = [method for method in methods if method not in METHODS]
        if unknown or not methods:
            self.fail(f"{value!r}: use methods among {','.join(METHODS)}", param, ctx)
        return methods


class ImagePath(click.ParamType):
    """An absolute path inside the image."""

    name = "PATH"

    def convert(self, value, param, ctx):
        if not value.startswith("/"):
            self.fail(f"{value!r} must be an absolute path inside the image", param, ctx)
        return PurePosixPath(os.path.normpath(value))


class Size(click.ParamType):
    """A size: bytes, or a number with a decimal (10MB) or binary (1.5GiB) unit."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class ImageTag(click.ParamType):
    """A tag as the engine parses it: checked before any work, so a bad one costs nothing."""

    name = "TAG"

    def convert(self, value, param, ctx):
        try:
            normalised_tag(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)
        return value


class ReportFile(click.ParamType):
    """A build report written by `slim build`, read and checked at parse time."""

    name = "REPORT.json"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return Path(value), Report.load(Path(value))
        except InvalidReport as e:
            self.fail(e.message, param, ctx)


def gate_options(function):
    """CI gates shared by `build` and `report`: each prints PASS/FAIL/SKIP; a FAIL exits with code 7."""
    decorators = [
        click.option("--fail-under-ratio", "min_ratio", type=click.FloatRange(min=0, min_open=True),
                     help="Gate: fail unless the original is at least this many times the slimmed size, e.g. 5."),
        click.option("--max-size", type=Size(),
                     help="Gate: fail if the slimmed image is larger (uncompressed), e.g. 50MB, 1.5GiB, 123456."),
        click.option("--require-verified", is_flag=True,
                     help="Gate: fail unless verification ran and passed."),
    ]
    for decorate in reversed(decorators):
        function = decorate(function)
    return function


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
        click.option("--openapi", metavar="FILE_OR_URL",
                     help="OpenAPI 3 or Swagger 2 document (JSON or YAML), a file or a URL: one HTTP request per "
                          "operation, with example parameters; its documented responses are the expected statuses."),
        click.option("--openapi-methods", type=MethodList(), default="GET,HEAD", show_default=True,
                     help="Methods of the --openapi operations to probe, comma-separated (e.g. GET,HEAD,POST)."),
        click.option("--cmd", type=CommandLine(), help="Run with this command instead of the image's Cmd "
                                                       "(the slimmed image keeps the original Cmd)."),
        click.option("--env", "env", type=EnvAssignment(), multiple=True,
                     help="Environment variable for the runs, KEY=VALUE. Repeatable."),
        click.option("--user", help="Run as this user (the slimmed image keeps the original User)."),
        click.option("--network", help="Docker network for the runs (default: the engine's bridge)."),
        click.option("--mount", "mounts", type=MountSpec(), multiple=True,
                     help="Bind mount for the runs, HOST:CONTAINER[:ro|rw]. Repeatable."),
        click.option("--ulimit", "ulimits", type=UlimitSpec(), multiple=True,
                     help="Resource limit for the runs, NAME=SOFT[:HARD] as docker run takes it, e.g. "
                          "nofile=1024:4096. Repeatable. On Podman nofile and nproc default to 1024."),
        click.option("--cap-add", "cap_add", multiple=True, metavar="CAPABILITY",
                     help="Add a Linux capability for the runs, e.g. NET_RAW (Podman's default set lacks it; a "
                          "program with that file capability cannot start without it). Repeatable."),
        click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
                     help="Seconds a batch run may take, and the budget for probes of a server."),
        click.option("--ready-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
                     help="Seconds to wait for a server to listen on its ports before probing, to retry its "
                          "'not ready yet' answers (refused, 502, 503, 504), and for a failing --exec probe to "
                          "start passing (pg_isready right after start)."),
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
        ulimits=tuple({ulimit.name: ulimit for ulimit in kwargs["ulimits"]}.values()),  # the last of a name wins
        cap_add=tuple(dict.fromkeys(name.upper().removeprefix("CAP_") for name in kwargs["cap_add"])),
        http_ports=tuple(kwargs["http_ports"]),
        exec_probes=tuple(kwargs["exec_probes"]),
        host_probes=tuple(kwargs["host_probes"]),
        probe_file=kwargs["probe_file"],
        openapi=kwargs["openapi"],
        openapi_methods=kwargs["openapi_methods"],
        timeout=kwargs["timeout"],
        ready_timeout=kwargs["ready_timeout"],
        continue_after=kwargs["continue_after"],
        probe_failure=kwargs["probe_failure"],
    )


def _rules_epilog() -> str:
    lines = [f"  {rule.name:<16} {rule.summary}" for rule in RULES]
    heading = "Keep rules (the report names the rule of each file it keeps; --no-rule NAME turns one off):"
    return "\b\n" + heading + "\n" + "\n".join(lines)


@cli.command(epilog=_rules_epilog())
@click.argument("image")
@click.option("--tag", type=ImageTag(), help="Tag for the slimmed image (default: REPO.slim:TAG).")
@click.option("--include-path", "include_paths", type=ImagePath(), multiple=True,
              help="Always keep this file or directory (with everything below it). Repeatable.")
@click.option("--exclude-path", "exclude_paths", type=ImagePath(), multiple=True,
              help="Never keep this file or directory, even if the run used it. Repeatable.")
@click.option("--app-files", type=click.Choice(APP_FILES_MODES), default="all", show_default=True,
              help="Files the image's own layers added (COPY/ADD, below WORKDIR or the entrypoint script): keep "
                   "all of them, only those in directories the run touched, or none beyond what the run used.")
@click.option("--no-rule", "no_rules", type=click.Choice(RULE_NAMES), multiple=True,
              help="Do not apply this keep rule (listed below). Repeatable.")
@run_options
@click.option("--no-verify", is_flag=True, help="Skip verification (the report says it was skipped).")
@click.option("--no-lookups", is_flag=True,
              help="Trace opens only, not the paths processes stat/access/readlink (no seccomp filter in the run).")
@click.option("--keep-unverified", is_flag=True,
              help="Tag the slimmed image even when verification finds a difference (exit code stays 6).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the JSON report (default: ./<image>.slim-report.json).")
@click.option("--sbom", "sbom_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the CycloneDX SBOM of the slimmed image (default: next to the report, "
                   "<image>.sbom.cdx.json).")
@click.option("--no-package-db", is_flag=True,
              help="Leave out the trimmed package database, license files and the SBOM inside the image: "
                   "vulnerability scanners will then see no package at all.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout instead of a summary.")
@gate_options
def build(image, tag, include_paths, exclude_paths, app_files, no_rules, no_verify, no_lookups, keep_unverified,
          report_path, sbom_path, no_package_db, as_json, min_ratio, max_size, require_verified, **kwargs):
    """Slim IMAGE: run it traced, keep what it uses, verify, tag the result.

    Example: slim build nginx:latest --tag nginx:slim
    """

    options = BuildOptions(
        image=image,
        tag=tag,
        include_paths=tuple(include_paths),
        exclude_paths=tuple(exclude_paths),
        run=_run_options(kwargs),
        verify=not no_verify,
        keep_unverified=keep_unverified,
        report_path=report_path,
        disabled_rules=tuple(dict.fromkeys(no_rules)),
        app_files=app_files,
        package_db=not no_package_db,
        sbom_path=sbom_path,
        trace_lookups=not no_lookups,
    )

    gates = gates_from_options(min_ratio, max_size, require_verified)
    engine = DockerEngine()
    _remove_leftovers(engine)
    with _progress() as on_stage:
        result = run_build(engine, FanotifyTracer(), options, on_stage)
    outcomes = [evaluate(gates, result.report)] if gates else []
    if as_json:
        gated = {"gates": outcomes[0].as_dict()} if outcomes else {}
        click.echo(json.dumps({**result.report.to_json(), **gated}, indent=2))
    else:
        render_summary(out_console, result.report, result.report_path)
    _show_gates(outcomes, err=as_json)


@cli.command()
@click.argument("image")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the SBOM to this file instead of stdout.")
def sbom(image, output):
    """Print the CycloneDX SBOM (1.6 JSON) of IMAGE, read from its filesystem: OS packages from the
    dpkg/apk databases, Python, npm and Ruby packages, with the file hashes the databases record.
    Works for any local image, so the original's and the slimmed image's can be compared.

    Example: slim sbom nginx.slim:1.25 -o nginx.slim.cdx.json
    """

    from .build.sbom import image_sbom  # late: see its docstring

    document = image_sbom(DockerEngine(), image)
    if output:
        output.write_text(document)
    else:
        click.echo(document)


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

    options = VerifyOptions(original=original, slimmed=slimmed, run=_run_options(kwargs))
    engine = DockerEngine()
    _remove_leftovers(engine)
    with _progress() as on_stage:
        result = verify_images(engine, options, on_stage)
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

    return {
        "original": image(result.original),
        "slimmed": image(result.slimmed),
        "verification": to_json(verification_section(result.verification)),
        "timings": dict(result.timings),
    }


def _render_verification(result) -> None:
    verification = result.verification
    for comparison in verification.comparisons:
        mark = "[green]same[/]" if comparison.same else "[bold red]DIFFERS[/]"
        out_console.print(f"{mark}  {safe(comparison.probe)}: original {safe(comparison.original)} / slimmed "
                          f"{safe(comparison.slimmed)}")
        for key, compared in comparison.volatile.items():
            out_console.print(f"      volatile {safe(key)}: compared {safe(compared)}")
    for problem in verification.invariant_failures:
        out_console.print(f"[bold red]invariant[/]  {safe(problem)}")
    checks = len(verification.comparisons)
    verdict = "[bold green]passed[/]" if verification.passed else "[bold red]FAILED[/]"
    out_console.print(f"verification: {verdict} ({checks} checks, {len(verification.invariant_failures)} "
                      f"invariant failures; {safe(result.original.ref)} -> {safe(result.slimmed.ref)})")


@cli.command()
@click.argument("image")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows to show in each list of the text output (--json always has everything).")
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON on stdout.")
def xray(image, top, as_json):
    """Look inside IMAGE without running it: layers, wasted space, largest directories, ELF files and
    their libraries, OS packages, setuid/setgid files.

    Example: slim xray nginx:latest --top 20
    """

    with _progress() as on_stage:
        result = analyse_image(DockerEngine(), image, on_stage)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else printable(render_xray(result, top)))


@cli.command()
@click.argument("reports", nargs=-1, required=True, type=ReportFile())
@click.option("--format", "output_format", type=click.Choice(["text", "json", "markdown", "html"]), default="text",
              show_default=True, help="text for terminals and CI logs, markdown for pull requests, html to share.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to this file instead of stdout.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@gate_options
def report(reports, output_format, output, as_json, min_ratio, max_size, require_verified):
    """Compare one or more build reports: sizes before and after, files, verification, bytes kept and
    removed per directory, the largest removed files. With $GITHUB_STEP_SUMMARY set, the markdown form is
    also appended there.

    Example: slim report *.slim-report.json --format html -o slim-report.html --max-size 50MB
    """

    gates = gates_from_options(min_ratio, max_size, require_verified)
    comparison = compare(reports, [evaluate(gates, report) for _, report in reports] if gates else [])
    output_format = "json" if as_json else output_format
    renderers = {
        "text": render_text,
        "markdown": render_markdown,
        "html": render_html,
        "json": lambda c: json.dumps(c.as_dict(), indent=2) + "\n",
    }
    document = printable(renderers[output_format](comparison))
    if output is not None:
        _write(output, document)
        err_console.print(f"report: {safe(output)}")
    else:
        click.echo(document, nl=not document.endswith("\n"))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        _write(Path(summary), printable(render_markdown(comparison)), append=True)
    # The text on stdout already ends with the gate lines; elsewhere they go to stderr for the CI log.
    _show_gates(list(comparison.gates), err=True, quiet=output is None and output_format == "text")


@cli.command()
@click.argument("report_file", metavar="REPORT.json", type=ReportFile())
@click.argument("path", type=ImagePath())
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON on stdout.")
def explain(report_file, path, as_json):
    """Say why PATH is in the slimmed image (each reason followed back to what the run did or a rule),
    or that it was removed and why.

    Example: slim explain nginx.slim-report.json /usr/lib/x86_64-linux-gnu/libssl.so.3
    """

    _, loaded = report_file
    result = explain_path(loaded, path)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else printable(render_explanation(result)))


@cli.command()
def gc():
    """Remove what slimtrace runs that died (killed, host crash) left behind: containers, work image tags
    and temp dirs named after a process that is gone. What a running slimtrace owns is never touched.

    Example: slim gc
    """

    if not _remove_leftovers(DockerEngine()):
        err_console.print("nothing left behind by dead slimtrace runs")


def _remove_leftovers(engine) -> bool:
    """Every build and verify starts by cleaning up after dead runs, and says what it removed."""

    leftovers = collect_garbage(engine)
    if leftovers:
        err_console.print(f"removed what dead slimtrace runs left behind: {leftovers.summary()}")
        for name in (*(f"container {cid[:12]}" for cid in leftovers.containers), *leftovers.images,
                     *leftovers.directories):
            err_console.print(f"  {safe(name)}")
    return bool(leftovers)


def _show_gates(outcomes, err: bool, quiet: bool = False) -> None:
    """Print each gate as dive's CI does, then fail with exit code 7 if any gate failed."""

    colours = {"PASS": "green", "FAIL": "red", "SKIP": "yellow"}
    for outcome in outcomes if not quiet else ():
        for line in map(printable, gate_lines(outcome)):
            word = line.strip().split(" ", 1)[0].rstrip(":")
            if word in colours:
                line = line.replace(word, click.style(word, fg=colours[word], bold=True), 1)
            click.echo(line, err=err)
    failed = [f"{o.image}: {r.gate}" for o in outcomes for r in o.results if r.status.value == "FAIL"]
    if failed:
        raise PolicyFailed(f"{len(failed)} gate{'s' if len(failed) > 1 else ''} failed ({'; '.join(failed)})")


def _write(path: Path, text: str, append: bool = False) -> None:
    try:
        with path.open("a" if append else "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as e:
        raise SlimError(f"cannot write {path}: {e.strerror or e}") from e


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
    # A shell starts background jobs with SIGINT ignored; we still want Ctrl-C/kill -INT to clean up.
    signal.signal(signal.SIGINT, raise_interrupt)
    signal.signal(signal.SIGTERM, raise_interrupt)
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
        err_console.print(f"Error: internal error: {type(e).__name__}: {safe(e)} (SLIM_DEBUG=1 shows the traceback)")
        code = ExitCode.TOOL_ERROR
    _exit_at_once(code if isinstance(code, int) else 0)


def _exit_at_once(code: int) -> NoReturn:
    """End the process without the interpreter's teardown, which frees every object one by one: 0.1 s after a
    build of redis had done everything. Nothing is left to it: every container, child process, temp dir and
    file of ours is gone or closed by now, and slimtrace registers no exit handlers; the output is flushed
    here. Output that cannot be written is an error, as it is when the interpreter flushes it at exit."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader went away (`slim report ... | head`): not an error of ours
        pass
    except OSError:
        code = code or ExitCode.TOOL_ERROR
    os._exit(code)
