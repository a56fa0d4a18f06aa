"""`slim build` and `slim verify`: the one place that calls the stages in order.

    build:  inspect -> index rootfs (beside the trace) -> run and trace -> closure -> assemble -> verify -> report
    verify: inspect both -> index both -> run the original -> verify the other against it

An ExitStack owns every resource we create (temp dirs, containers, the unverified image), so an error or
Ctrl-C at any point leaves nothing of ours behind. Stages never print: progress goes through `on_stage`.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import functools
import gc
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Mapping

from .build import verify as verification
from .build.assemble import LAYER_NAME, AssembledImage, build_image, plan_image
from .build.closure import ClosureOptions, compute_closure, sightings_that_count
from .engine import BindMount, ContainerSpec, Engine, Ulimit
from .enginehost import require_local, require_traceable_storage, this_machine
from .errors import ApplicationFailed, NoSpace, SlimError, TracingUnavailable, UsageError, VerificationFailed
from .build.exercise import ExercisePlan, exercise
from .model import BuiltImage, Closure, ImageFacts, RunOutcome, Seen, Sightings, Trace, Verification
from .output_file import check_writable, write_text
from .ownership import deferred_interrupts, enter_temp_dir, retire, retiring, work_tag
from .references import normalised_tag, same_name
from .tracer import Tracer
from .reporting.report import Report, build_report
from .image.apart import index_image
from .image.rootfs import RootFS, SourceImage, layer_steps, source_image
from .build.sizes import BackgroundGzip
from .build.tracing import GATE_MOUNT, run_traced
from probes import ExecProbe, HostExecProbe, HttpProbe, Probe
from probes.interface import ProbeInputError
from probes.openapi import load_openapi
from probes.probefile import ProbeFile, load_probe_file

StageCallback = Callable[[str], None]
RESULT_DIR = "result"  # where build_image writes the slimmed layer, inside the build's temp dir


@dataclass(frozen=True)
class RunOptions:
    """How to run the application while tracing and verifying (the result image's config stays the original's)."""

    cmd: tuple[str, ...] | None = None  # replaces the image's Cmd for the runs
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    network: str | None = None
    mounts: tuple[BindMount, ...] = ()
    ulimits: tuple[Ulimit, ...] = ()
    cap_add: tuple[str, ...] = ()
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
    disabled_rules: tuple[str, ...] = ()  # --no-rule: names of slim.rules.table.RULES not to apply
    app_files: str = "all"  # --app-files: none | touched | all
    package_db: bool = True  # --no-package-db turns off the trimmed package databases and the stored SBOM
    sbom_path: Path | None = None  # --sbom (default: next to the report)
    trace_lookups: bool = True  # --no-lookups turns the lookup filter off


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


@dataclass(frozen=True)
class _Indexed:
    source: SourceImage
    rootfs: RootFS
    seconds: float
    gzip: BackgroundGzip  # what a registry would store of the original, measured while the build goes on


def _index_original(engine: Engine, image_id: str, workdir: Path) -> _Indexed:
    started = time.monotonic()
    source, rootfs = index_image(engine, image_id, workdir)
    seconds = round(time.monotonic() - started, 3)
    # Started here, it runs while the trace still waits on the application, not beside the closure's CPU.
    return _Indexed(source, rootfs, seconds, BackgroundGzip(source.layers))


def _closure(seen: Sightings, original: _Indexed, facts: ImageFacts, options: BuildOptions) -> Closure:
    return compute_closure(
        seen, original.rootfs, facts,
        ClosureOptions(
            include_paths=options.include_paths,
            exclude_paths=options.exclude_paths,
            disabled_rules=frozenset(options.disabled_rules),
            app_files=options.app_files,
            layer_steps=layer_steps(original.source.config, len(original.source.layers)),
            package_db=options.package_db,
        ),
    )


def _assemble(
    engine: Engine, closure: Closure, original: _Indexed, facts: ImageFacts, options: BuildOptions, into: Path, tag: str
) -> AssembledImage:
    rootfs = original.rootfs
    image_plan = plan_image(closure, rootfs, facts, _stored_sbom(rootfs, closure, facts, options))
    return build_image(engine, image_plan, rootfs, into, tag)


def _stop_measuring(indexing: concurrent.futures.Future[_Indexed]) -> None:
    if not indexing.cancelled() and indexing.exception() is None:
        indexing.result().gzip.close()


class EarlyBuild:
    """The closure of what the trace had seen when the probes ended, and the slimmed image of that closure,
    made on a thread while the traced server settles and stops (the main thread only waits then).

    Most runs see nothing new after their probes, or nothing that leads into the image (files the app
    created as it settled and stopped, paths it checked for that the image lacks): the early closure is then
    the closure of the whole trace, and its image the image. A run that does has its closure computed again
    from the whole trace, and the image assembled again unless that closure is the same (files seen at
    shutdown that the closure already kept change nothing). Either way the result is the same computation
    on the same input."""

    def __init__(
        self,
        closure_of: Callable[[Sightings], Closure],
        assemble: Callable[[Closure], AssembledImage],
        discard: Callable[[], None],
        counted: Callable[[Sightings], Seen] = lambda seen: Seen(seen.paths, seen.lookups),
    ):
        """`assemble` loads the image under this build's work tag; `discard()` lets go of what that tag holds
        (an early image of another closure, before the right one is loaded under the same tag). `counted`
        gives what of a trace `closure_of` depends on: two traces that agree there have the same closure."""
        self._closure_of = closure_of
        self._assemble = assemble
        self._discard = discard
        self._counted = counted
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="slimtrace-early")
        self._early: _Early | None = None

    def start(self, seen: Seen) -> None:
        closure = self._thread.submit(self._closure_of, seen)
        self._early = _Early(seen, closure, self._thread.submit(lambda: self._assemble(closure.result())))

    def closure(self, trace: Trace) -> Closure:
        early = self._early
        if early is not None and self._counted(early.seen) == self._counted(trace):
            return early.closure.result()
        return self._closure_of(trace)

    def image(self, closure: Closure) -> AssembledImage:
        """The image of `closure` (what `closure()` returned): the early one when it is of the same closure."""
        early, self._early = self._early, None
        if early is not None:
            concurrent.futures.wait([early.image])  # a load under way is this build's image until it ends
            if early.of(closure):
                return early.image.result()
            self._drop(early)
        return self._assemble(closure)

    def close(self) -> None:
        """Ends the thread; an early image not handed out by `image()` is let go of."""
        self._thread.shutdown(cancel_futures=True)
        early, self._early = self._early, None
        if early is not None and not early.image.cancelled():
            self._drop(early)

    def _drop(self, early: _Early) -> None:
        if early.image.exception() is None:
            early.image.result().gzip.close()
        self._discard()


@dataclass(frozen=True)
class _Early:
    seen: Seen
    closure: concurrent.futures.Future[Closure]
    image: concurrent.futures.Future[AssembledImage]

    def of(self, closure: Closure) -> bool:
        """Whether the early image was made, and made of `closure`."""
        return self.image.exception() is None and self.closure.result() == closure


def default_tag(facts: ImageFacts) -> str:
    """`repo.slim:tag`, the convention users of image slimmers know; an untagged source gets `slim-<id>`."""
    if facts.repo_tags:
        repository, _, version = facts.repo_tags[0].rpartition(":")
        return f"{repository}.slim:{version}"
    return f"slim-{facts.id.removeprefix('sha256:')[:12]}:latest"


def build(
    engine: Engine, tracer: Tracer, options: BuildOptions, on_stage: StageCallback = lambda _: None
) -> BuildResult:
    with _disk_space_named(), _prompt_thread_switches(), _startup_objects_frozen():
        return _build(engine, tracer, options, on_stage)


@contextlib.contextmanager
def _prompt_thread_switches() -> Iterator[None]:
    """A build's main thread mostly waits on the engine while the index and closure threads compute. Each answer
    from the engine wakes it, and it needs the GIL back to go on: by default a computing thread keeps the GIL
    up to 5 ms after it is asked for, and a call to the engine waits for it several times. Measured on redis
    while the index ran: the first inspect after the container started took 0.11-0.16 s instead of 0.002 s,
    and the traced application was let go that much later. 0.5 ms bounds the wait at a tenth of that."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@contextlib.contextmanager
def _startup_objects_frozen() -> Iterator[None]:
    """The objects alive when a build starts (the imported modules, their classes and functions) outlive it:
    the collector is told so, and its full collections stop walking them again. Measured on redis: two full
    collections took 0.07-0.1 s of the build, one over what the build itself made takes 0.015 s."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _build(engine: Engine, tracer: Tracer, options: BuildOptions, on_stage: StageCallback) -> BuildResult:
    timer = _Timer(on_stage)
    if options.report_path is not None:
        check_writable(options.report_path)
    with contextlib.ExitStack() as cleanup:
        cleanup.enter_context(retiring())  # left last: what the build retired in the background is done
        workdir = enter_temp_dir(cleanup, "build")

        with timer.stage("inspect"):
            engine_host = engine.host()
            require_local(engine_host, this_machine())
            require_traceable_storage(engine_host)
            facts = engine.inspect_image(options.image)
            tag = options.tag or default_tag(facts)
            _check_tag(tag, facts)
            report_path = options.report_path or Path(_report_name(facts))
            sbom_path = options.sbom_path or _sbom_name(report_path)
            check_writable(report_path)
            check_writable(sbom_path)
            plan = exercise_plan(facts, options.run)
            spec = container_spec(facts.id, facts, options.run, plan)
        with timer.stage("index"):
            # The index is read on a thread while the traced container starts and runs: the trace mostly
            # waits on the application and the engine, the index only on the CPU. Its seconds overlap the trace's.
            indexer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="slimtrace-index")
            # On the way out, the index thread ends first, then the measuring it started, then the temp dir goes.
            # Interrupts held: a Ctrl-C between the thread's start and these callbacks would leave it writing
            # into the temp dir while the dir is removed (seen in CI: a build dir left behind).
            with deferred_interrupts():
                indexing = indexer.submit(_index_original, engine, facts.id, workdir / "source")
                cleanup.callback(_stop_measuring, indexing)
                cleanup.callback(indexer.shutdown)
        # The image is this build's through a work tag the engine holds; letting go of it removes the image
        # only when nobody else tagged it (another build of the same input, or the user's tag).
        work = work_tag()
        cleanup.callback(retire, engine.remove_image, work)  # after the removal of the containers run from it
        early = EarlyBuild(
            lambda seen: _closure(seen, indexing.result(), facts, options),
            lambda closure: _assemble(engine, closure, indexing.result(), facts, options, workdir / RESULT_DIR, work),
            lambda: engine.remove_image(work),
            lambda seen: sightings_that_count(seen, indexing.result().rootfs),
        )
        cleanup.callback(early.close)  # before the index thread ends: the early thread waits on it
        with timer.stage("trace"):
            try:
                trace = run_traced(
                    engine, tracer, spec, lambda cid, mark, news: exercise(engine, cid, plan, mark, news),
                    lookups=options.trace_lookups, on_probed=early.start,
                )
            except SlimError:
                _require_free_gate_mount(indexing.result().rootfs)  # the image's own gate mount point is why, then
                raise
            original = indexing.result()
            _require_free_gate_mount(original.rootfs)
            _require_healthy_original(trace.run, options.run)
        timer.seconds["index"] = original.seconds
        source, rootfs = original.source, original.rootfs
        with timer.stage("closure"):
            closure = early.closure(trace)
        with timer.stage("assemble"):
            assembled = early.image(closure)
            cleanup.callback(assembled.gzip.close)
            built = assembled.image
        # The SBOM names the built image, whatever the verdict: it is written on a thread while verification
        # waits on the slimmed container.
        from .build.sbom import SBOM_PATH, Subject, kept_files, package_purls, sbom_json  # late: see its docstring

        sbom_writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="slimtrace-sbom")
        cleanup.callback(sbom_writer.shutdown)
        sbom_document = sbom_writer.submit(sbom_json, kept_files(rootfs, closure), Subject(tag, built.id, facts.id))
        result = None
        if options.verify:
            with timer.stage("verify"):
                slimmed = engine.inspect_image(built.id)
                slimmed_root = functools.cache(lambda: _slimmed_root(engine, slimmed, built, workdir))
                def hurry_sizes() -> None:
                    # The compressed sizes are worked out at full priority while the slimmed server is only
                    # left running: otherwise, on a busy machine, the build could wait for them afterwards.
                    original.gzip.hurry()
                    assembled.gzip.hurry()

                result = verification.verify(engine, facts, slimmed, slimmed_root, spec, plan, trace.run, rootfs,
                                             lingering=hurry_sizes)
                if not result.passed:
                    result = _with_hints(engine, tracer, result, trace, dataclasses.replace(spec, image=built.id),
                                         plan, rootfs, slimmed_root())
        with timer.stage("measure"):
            source_layers = original.gzip.result()
            built = assembled.measured()
        handed_over = tag if result is None or result.passed or options.keep_unverified else None
        sbom = sbom_document.result()
        report = build_report(
            facts, rootfs, trace, closure, built, handed_over, result, timer.seconds,
            source_layers=source_layers, read_in_place=source.read_in_place, include_paths=options.include_paths, exclude_paths=options.exclude_paths,
            disabled_rules=options.disabled_rules, app_files=options.app_files,
            sbom={"path": str(sbom_path), "in_image": str(SBOM_PATH) if options.package_db else None,
                  "format": "CycloneDX 1.6 JSON", "components": len(package_purls(sbom))},
        )
        # The tag, the SBOM and the report go together: an interrupt waits for all, a report that cannot be
        # written takes the tag back.
        with deferred_interrupts():
            write_text(sbom_path, sbom)
            _hand_over(engine, built, handed_over, report, report_path)
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
        cleanup.enter_context(retiring())
        workdir = enter_temp_dir(cleanup, "verify")
        with timer.stage("inspect"):
            # The runs are local too: host probes reach 127.0.0.1, a timed-out exec is killed by its host pid.
            require_local(engine.host(), this_machine())
            facts = engine.inspect_image(options.original)
            slimmed = engine.inspect_image(options.slimmed)
            plan = exercise_plan(facts, options.run)
            spec = container_spec(facts.id, facts, options.run, plan)
        with timer.stage("index"):
            original_root = RootFS.from_layers(source_image(engine, facts.id, workdir / "original").layers)
            slimmed_root = RootFS.from_layers(source_image(engine, slimmed.id, workdir / "slimmed").layers)
        with timer.stage("run"):
            original = verification.run_exercised(engine, spec, plan)
            _require_healthy_original(original, options.run)
        with timer.stage("verify"):
            result = verification.verify(
                engine, facts, slimmed, lambda: slimmed_root, spec, plan, original, original_root
            )
    return VerifyResult(facts, slimmed, result, timer.seconds)


def exercise_plan(facts: ImageFacts, run: RunOptions) -> ExercisePlan:
    """Server images get probed then stopped; images without ports or probes are batch jobs run to exit.

    Every exposed port (or --http-port instead) gets an HTTP probe, and so does every other port the probe
    file sends requests to. Only an exposed port nobody asked HTTP of may answer in another protocol.
    """
    probe_file = _probe_file(run)
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


def _probe_file(run: RunOptions) -> ProbeFile:
    """The probe file's requests, then the OpenAPI document's; a file probes cannot use is a usage error."""
    try:
        probe_file = load_probe_file(run.probe_file) if run.probe_file else ProbeFile()
        if run.openapi:
            # The API's operations go to the first probed port, as probe-file requests naming no port do.
            operations = load_openapi(run.openapi, run.openapi_methods)
            probe_file = dataclasses.replace(probe_file, http=probe_file.http + operations)
    except ProbeInputError as error:
        raise UsageError(str(error)) from error
    return probe_file


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
        stop_signal=facts.config.get("StopSignal"),
        ulimits=run.ulimits,
        cap_add=run.cap_add,
    )


def _check_tag(tag: str, facts: ImageFacts) -> None:
    """Compared as the engine normalises names: docker.io/library/foo:latest is foo."""
    try:
        normalised_tag(tag)
    except ValueError as e:
        raise UsageError(f"--tag {e}") from e
    original = next((name for name in facts.repo_tags if same_name(tag, name)), None)
    if original is not None:
        raise UsageError(f"--tag {tag} names the original image {original}; slimtrace never replaces the original")


def _require_free_gate_mount(rootfs: RootFS) -> None:
    """The gate is bind-mounted at GATE_MOUNT: over an image's own file there the mount fails, over its
    symlink it lands where the link leads (its /tmp, say) and the traced run no longer matches the image."""
    owned = rootfs.get(PurePosixPath(GATE_MOUNT))
    if owned is not None:
        raise TracingUnavailable(
            f"the image has its own {GATE_MOUNT} ({owned.kind.value}), where slimtrace mounts its gate "
            "program: this image cannot be traced"
        )


def _require_healthy_original(run: RunOutcome, options: RunOptions) -> None:
    """A probe that fails on the ORIGINAL would make a tiny broken image look fine: stop by default."""
    if run.mode == "batch" and run.exit_code != 0:
        code = "did not exit in time" if run.exit_code is None else f"exited with code {run.exit_code}"
        raise ApplicationFailed(f"the original image {code}{_tail(run)}")
    if run.paused:
        raise ApplicationFailed(
            "the original container was paused from outside during the probes (docker pause): what they saw of"
            " a frozen application says nothing about the image; unpause it, or leave it running, and build again"
        )
    if run.mode == "server" and run.exit_code is not None and run.exit_code != 0:
        raise ApplicationFailed(f"the original container exited with code {run.exit_code} during probes{_tail(run)}")
    if run.mode == "server" and not run.running_after_probes and options.continue_after == "probes":
        # A server stays up until we stop it; one that exited cleanly was most likely stopped from outside.
        raise ApplicationFailed(
            f"the original container stopped during the probes (exit code {run.exit_code}; was it stopped from "
            f"outside?){_tail(run)}"
        )
    failed = [probe for probe in run.probes if not probe.ok]
    if failed and options.probe_failure == "error":
        raise ApplicationFailed(
            f"probe {failed[0].probe!r} failed on the original image: {failed[0].detail}"
            " (fix the probe, or --probe-failure warn to carry on)"
        )


def _tail(run: RunOutcome, lines: int = 3) -> str:
    last = [line.strip()[:200] for line in run.output_tail.strip().splitlines() if line.strip()][-lines:]
    return f"; last output: {' | '.join(last)}" if last else ""


def _with_hints(
    engine: Engine,
    tracer: Tracer,
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
        # Only opens are compared, so the lookup filter would be cost without use here.
        slimmed_plan = verification.plan_like(plan, original.run)
        slimmed = run_traced(
            engine, tracer, slimmed_spec, lambda cid, mark, news: exercise(engine, cid, slimmed_plan, mark, news),
            lookups=False,
        )
    except SlimError:
        return result
    missing = verification.likely_missing(original, slimmed, original_root, slimmed_root)
    return dataclasses.replace(result, missing_in_slimmed=missing)


def _hand_over(engine: Engine, built: BuiltImage, tag: str | None, report: Report, report_path: Path) -> None:
    if tag is not None:
        engine.tag_image(built.id, tag)
    try:
        report.write(report_path)
    except SlimError:
        if tag is not None:
            engine.remove_image(tag)
        raise


@contextlib.contextmanager
def _disk_space_named() -> Iterator[None]:
    """A full disk says which directory filled up, not just errno 28."""
    try:
        yield
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        directory = Path(e.filename or tempfile.gettempdir())
        while not directory.is_dir():  # the file that did not fit, or the build's temp dir, already removed
            directory = directory.parent
        raise NoSpace(directory) from e


def _slimmed_root(engine: Engine, slimmed: ImageFacts, built: BuiltImage, workdir: Path) -> RootFS:
    """The slimmed filesystem, indexed from the layer we just wrote when the engine holds exactly that
    layer (its diff id is the digest of the very bytes), so it need not be exported again."""
    if slimmed.layer_diff_ids == (built.layer_diff_id,):
        return RootFS.from_layers([workdir / RESULT_DIR / LAYER_NAME])
    return RootFS.from_layers(source_image(engine, built.id, workdir / "verify").layers)


def _stored_sbom(
    rootfs: RootFS, closure: Closure, facts: ImageFacts, options: BuildOptions
) -> dict[PurePosixPath, bytes]:
    """The SBOM copy the slimmed image holds (none with --no-package-db). It names neither the image's own
    id, which depends on the copy, nor its tag, which is no part of the image: the same input must still
    give the same image, so it is named after the source."""
    if not options.package_db:
        return {}
    from .build.sbom import SBOM_PATH, Subject, kept_files, sbom_json  # late: see its docstring

    document = sbom_json(kept_files(rootfs, closure), Subject(facts.ref, None, facts.id), indent=None)
    return {SBOM_PATH: document.encode()}


def _sbom_name(report_path: Path) -> Path:
    """web.slim-report.json -> web.sbom.cdx.json, next to it."""
    stem = report_path.name.removesuffix(".json").removesuffix(".slim-report")
    return report_path.with_name(f"{stem}.sbom.cdx.json")


def _report_name(facts: ImageFacts) -> str:
    name = (facts.repo_tags[0] if facts.repo_tags else facts.id.removeprefix("sha256:")[:12])
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in name)
    return f"{safe}.slim-report.json"
