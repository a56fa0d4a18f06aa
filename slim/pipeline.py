"""`slim build` and `slim verify`: the one place that calls the stages in order.

    build:  inspect -> index rootfs -> run and trace -> closure -> assemble -> verify -> report
    verify: inspect both -> index both -> run the original -> verify the other against it

An ExitStack owns every resource we create (temp dirs, containers, the unverified image), so an error or
Ctrl-C at any point leaves nothing of ours behind. Stages never print: progress goes through `on_stage`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Mapping

from . import verify as verification
from .assemble import build_image, plan_image
from .closure import ClosureOptions, compute_closure
from .engine import BindMount, ContainerSpec, Engine
from .errors import ApplicationFailed, SlimError, UsageError, VerificationFailed
from .exercise import ExercisePlan, exercise
from .model import BuiltImage, ImageFacts, RunOutcome, Trace, Verification
from .report import Report, build_report
from .rootfs import RootFS, layer_steps, saved_config, spool_image
from .sizes import BackgroundGzip
from .tracing import run_traced
from probes import ExecProbe, HostExecProbe, HttpProbe, Probe
from probes.openapi import load_openapi
from probes.probefile import ProbeFile, load_probe_file

StageCallback = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    """How to run the application while tracing and verifying (the result image's config stays the original's)."""

    cmd: tuple[str, ...] | None = None  # replaces the image's Cmd for the runs
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    network: str | None = None
    mounts: tuple[BindMount, ...] = ()
    http_ports: tuple[int, ...] = ()  # probe these instead of the exposed ports
    exec_probes: tuple[tuple[str, ...], ...] = ()
    host_probes: tuple[str, ...] = ()
    probe_file: Path | None = None
    openapi: str | None = None  # an OpenAPI / Swagger document (file or URL): one request per operation
    openapi_methods: tuple[str, ...] = ("GET", "HEAD")
    timeout: float = 120.0
    # Seconds to wait for the server to listen on its ports, to retry "not ready yet" answers (the warm-up),
    # and for a failing exec probe to start passing.
    ready_timeout: float = 30.0
    continue_after: str = "probes"
    probe_failure: str = "error"  # or "warn": carry on when a probe fails on the original


@dataclass(frozen=True)
class BuildOptions:
    image: str
    tag: str | None = None
    include_paths: tuple[PurePosixPath, ...] = ()
    exclude_paths: tuple[PurePosixPath, ...] = ()
    run: RunOptions = RunOptions()
    verify: bool = True
    keep_unverified: bool = False
    report_path: Path | None = None
    disabled_rules: tuple[str, ...] = ()  # --no-rule: names of slim.rules.RULES not to apply
    app_files: str = "all"  # --app-files: none | touched | all


@dataclass(frozen=True)
class BuildResult:
    report: Report
    report_path: Path


@dataclass(frozen=True)
class VerifyOptions:
    original: str
    slimmed: str  # any image: it runs with the original's command and settings
    run: RunOptions = RunOptions()


@dataclass(frozen=True)
class VerifyResult:
    original: ImageFacts
    slimmed: ImageFacts
    verification: Verification
    timings: Mapping[str, float]


class _Timer:
    """Wall time per stage, announced to the CLI as each stage starts."""

    def __init__(self, on_stage: StageCallback):
        self.on_stage = on_stage
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.on_stage(name)
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - started, 3)


def default_tag(facts: ImageFacts) -> str:
    """`repo.slim:tag`, the convention users of image slimmers know; an untagged source gets `slim-<id>`."""
    if facts.repo_tags:
        repository, _, version = facts.repo_tags[0].rpartition(":")
        return f"{repository}.slim:{version}"
    return f"slim-{facts.id.removeprefix('sha256:')[:12]}:latest"


def build(engine: Engine, options: BuildOptions, on_stage: StageCallback = lambda _: None) -> BuildResult:
    timer = _Timer(on_stage)
    with contextlib.ExitStack() as cleanup:
        scratch = tempfile.TemporaryDirectory(prefix="slimtrace-", ignore_cleanup_errors=True)
        workdir = Path(cleanup.enter_context(scratch))

        with timer.stage("inspect"):
            facts = engine.inspect_image(options.image)
            tag = options.tag or default_tag(facts)
            _check_tag(tag, facts)
            plan = exercise_plan(facts, options.run)
            spec = container_spec(facts.id, facts, options.run, plan)
        with timer.stage("index"):
            source_tars = spool_image(engine, facts.id, workdir / "source")
            steps = layer_steps(saved_config(workdir / "source", facts.id), len(source_tars))
            # What a registry would store of the original, measured on a thread while the build goes on.
            source_gzip = BackgroundGzip(source_tars)
            cleanup.callback(source_gzip.close)
            rootfs = RootFS.from_layers(source_tars)
        with timer.stage("trace"):
            trace = run_traced(engine, spec, lambda cid, mark: exercise(engine, cid, plan, mark))
            _require_healthy_original(trace.run, options.run.probe_failure)
        with timer.stage("closure"):
            closure = compute_closure(
                trace, rootfs, facts,
                ClosureOptions(
                    include_paths=options.include_paths,
                    exclude_paths=options.exclude_paths,
                    disabled_rules=frozenset(options.disabled_rules),
                    app_files=options.app_files,
                    layer_steps=steps,
                ),
            )
        with timer.stage("assemble"):
            image_plan = plan_image(closure, rootfs, facts)
            built = build_image(engine, image_plan, rootfs, workdir / "result")
            # Until verification passes the image is ours to remove; tagging it hands it to the user.
            unverified = cleanup.enter_context(_RemovedUnlessHandedOver(engine, built))
        result = None
        if options.verify:
            with timer.stage("verify"):
                slimmed = engine.inspect_image(built.id)
                slimmed_root = RootFS.from_layers(spool_image(engine, built.id, workdir / "verify"))
                result = verification.verify(engine, facts, slimmed, slimmed_root, spec, plan, trace.run, rootfs)
                if not result.passed:
                    result = _with_hints(engine, result, trace, dataclasses.replace(spec, image=built.id), plan,
                                         rootfs, slimmed_root)
        if result is None or result.passed or options.keep_unverified:
            engine.tag_image(built.id, tag)
            unverified.handed_over = True
        with timer.stage("measure"):
            source_layers = source_gzip.result()
        report = build_report(
            facts, rootfs, trace, closure, built, tag if unverified.handed_over else None, result, timer.seconds,
            source_layers=source_layers, include_paths=options.include_paths, exclude_paths=options.exclude_paths,
            disabled_rules=options.disabled_rules, app_files=options.app_files,
        )
        report_path = options.report_path or Path(_report_name(facts))
        report.write(report_path)
        if result is not None and not result.passed:
            hint = f"; likely missing: {', '.join(result.missing_in_slimmed[:3])}" if result.missing_in_slimmed else ""
            raise VerificationFailed(
                f"the slimmed image does not behave like the original ({result.summary()}){hint}; "
                f"report: {report_path}"
            )
        return BuildResult(report, report_path)


def verify_images(engine: Engine, options: VerifyOptions, on_stage: StageCallback = lambda _: None) -> VerifyResult:
    """`slim verify`: the same probes against both images (untraced), and the static invariants of the
    slimmed one with the original's filesystem as the baseline."""
    timer = _Timer(on_stage)
    with contextlib.ExitStack() as cleanup:
        scratch = tempfile.TemporaryDirectory(prefix="slimtrace-", ignore_cleanup_errors=True)
        workdir = Path(cleanup.enter_context(scratch))
        with timer.stage("inspect"):
            facts = engine.inspect_image(options.original)
            slimmed = engine.inspect_image(options.slimmed)
            plan = exercise_plan(facts, options.run)
            spec = container_spec(facts.id, facts, options.run, plan)
        with timer.stage("index"):
            original_root = RootFS.from_layers(spool_image(engine, facts.id, workdir / "original"))
            slimmed_root = RootFS.from_layers(spool_image(engine, slimmed.id, workdir / "slimmed"))
        with timer.stage("run"):
            original = verification.run_exercised(engine, spec, plan)
            _require_healthy_original(original, options.run.probe_failure)
        with timer.stage("verify"):
            result = verification.verify(engine, facts, slimmed, slimmed_root, spec, plan, original, original_root)
    return VerifyResult(facts, slimmed, result, timer.seconds)


def exercise_plan(facts: ImageFacts, run: RunOptions) -> ExercisePlan:
    """Server images get probed then stopped; images without ports or probes are batch jobs run to exit.

    Every exposed port (or --http-port instead) gets an HTTP probe, and so does every other port the probe
    file sends requests to. Only an exposed port nobody asked HTTP of may answer in another protocol.
    """
    probe_file = load_probe_file(run.probe_file) if run.probe_file else ProbeFile()
    if run.openapi:
        # The API's operations go to the first probed port, as probe-file requests naming no port do.
        operations = load_openapi(run.openapi, run.openapi_methods)
        probe_file = dataclasses.replace(probe_file, http=probe_file.http + operations)
    ports = run.http_ports or facts.exposed_tcp_ports
    default_port = ports[0] if ports else None
    if default_port is None and any(request.port is None for request in probe_file.http):
        raise UsageError(
            f"{run.probe_file or run.openapi}: an http request names no port and the image exposes none"
            " (add port: or --http-port)"
        )
    declared = {request.port or default_port for request in probe_file.http}
    probes: list[Probe] = []
    for port in (*ports, *sorted(declared - set(ports))):
        requests = probe_file.requests_for(port, default_port=default_port)
        probes.append(
            HttpProbe(
                port,
                paths=("/",) if port in ports else (),  # a port only the probe file names gets its requests only
                requests=requests,
                require_http=bool(run.http_ports) or bool(requests),
                ready_timeout=run.ready_timeout,
            )
        )
    probes += [ExecProbe(argv, ready_timeout=run.ready_timeout) for argv in run.exec_probes + probe_file.exec]
    probes += [HostExecProbe(command) for command in run.host_probes + probe_file.host]
    mode = "server" if probes else "batch"
    return ExercisePlan(
        probes=tuple(probes),
        mode=mode,
        timeout=run.timeout,
        continue_after=run.continue_after,
        ready_timeout=run.ready_timeout,
        passes=2,  # the original's runs: volatility is learned from two passes
    )


def container_spec(image: str, facts: ImageFacts, run: RunOptions, plan: ExercisePlan) -> ContainerSpec:
    """The explicit argv and run settings shared by the traced run and the verification runs."""
    command = run.cmd if run.cmd is not None else facts.cmd
    argv = facts.entrypoint + command
    if not argv:
        raise ApplicationFailed(f"image {facts.ref!r} has no Entrypoint or Cmd: nothing to run (give --cmd)")
    return ContainerSpec(
        image=image,
        entrypoint=argv[:1],
        command=argv[1:],
        env=dict(run.env),
        user=run.user,
        publish_tcp=plan.ports,
        mounts=run.mounts,
        network=run.network,
    )


def _check_tag(tag: str, facts: ImageFacts) -> None:
    if tag in facts.repo_tags or (":" not in tag.rsplit("/", 1)[-1] and f"{tag}:latest" in facts.repo_tags):
        raise UsageError(f"--tag {tag} names the original image; slimtrace never replaces the original")


def _require_healthy_original(run: RunOutcome, probe_failure: str) -> None:
    """A probe that fails on the ORIGINAL would make a tiny broken image look fine: stop by default."""
    if run.mode == "batch" and run.exit_code != 0:
        code = "did not exit in time" if run.exit_code is None else f"exited with code {run.exit_code}"
        raise ApplicationFailed(f"the original image {code}{_tail(run)}")
    if run.mode == "server" and run.exit_code is not None and run.exit_code != 0:
        raise ApplicationFailed(f"the original container exited with code {run.exit_code} during probes{_tail(run)}")
    failed = [probe for probe in run.probes if not probe.ok]
    if failed and probe_failure == "error":
        raise ApplicationFailed(
            f"probe {failed[0].probe!r} failed on the original image: {failed[0].detail}"
            " (fix the probe, or --probe-failure warn to carry on)"
        )


def _tail(run: RunOutcome, lines: int = 3) -> str:
    last = [line.strip()[:200] for line in run.output_tail.strip().splitlines() if line.strip()][-lines:]
    return f"; last output: {' | '.join(last)}" if last else ""


def _with_hints(
    engine: Engine,
    result: Verification,
    original: Trace,
    slimmed_spec: ContainerSpec,
    plan: ExercisePlan,
    original_root: RootFS,
    slimmed_root: RootFS,
) -> Verification:
    """Only when verification failed: run the slimmed image once more, traced, and name the files the
    original used that it lacks. A hint is a bonus: if this run fails, the verification result stands."""
    try:
        slimmed_plan = verification.plan_like(plan, original.run)
        slimmed = run_traced(engine, slimmed_spec, lambda cid, mark: exercise(engine, cid, slimmed_plan, mark))
    except SlimError:
        return result
    missing = verification.likely_missing(original, slimmed, original_root, slimmed_root)
    return dataclasses.replace(result, missing_in_slimmed=missing)


class _RemovedUnlessHandedOver(contextlib.AbstractContextManager):
    """Removes the slimmed image on the way out, unless it was handed to the user (tagged) or the engine
    held that exact image before this build (the same input gives the same id: it is not ours)."""

    def __init__(self, engine: Engine, built: BuiltImage):
        self.engine, self.built, self.handed_over = engine, built, False

    def __exit__(self, *exc) -> None:
        if not self.handed_over and not self.built.preexisting:
            self.engine.remove_image(self.built.id)


def _report_name(facts: ImageFacts) -> str:
    name = (facts.repo_tags[0] if facts.repo_tags else facts.id.removeprefix("sha256:")[:12])
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in name)
    return f"{safe}.slim-report.json"
