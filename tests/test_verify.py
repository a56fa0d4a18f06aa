"""Verification helpers and the probe plan built from the options: values in, values out, no engine."""
from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path, PurePosixPath

import pytest

from probes import ExecProbe, HttpProbe
from slim.errors import UsageError
from slim.build.exercise import BATCH_RUN, QUIET, SETTLE, ExercisePlan
from probes.interface import ProbeOutcome
from slim.model import Access, ImageFacts, RunOutcome, Trace, TracedPath, TraceHealth
from slim.pipeline import RunOptions, container_spec, exercise_plan
from slim.image.rootfs import RootFS
from slim.build.verify import _not_started, compare_runs, config_problems, likely_missing, plan_like, run_exercised
from slim.adapters.docker_engine import DockerEngine
from slim.engine import ContainerSpec
from probes.http import NOT_HTTP


def facts(**config) -> ImageFacts:
    return ImageFacts("img", "sha256:" + "0" * 64, ("img:1",), 1, "linux", "amd64", "", (), config)


def rootfs(tmp_path: Path, name: str, files: dict[str, bytes]) -> RootFS:
    tar_path = tmp_path / f"{name}.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return RootFS.from_layers([tar_path])


def trace(*paths: str) -> Trace:
    traced = tuple(TracedPath(PurePosixPath(p), frozenset({Access.OPEN}), "python3", "http :8000") for p in paths)
    run = RunOutcome("server", None, True, ())
    return Trace(traced, TraceHealth(events=len(paths), overflow=False), run)


# ---------------------------------------------------------------- hints and invariants


def test_likely_missing_names_files_the_original_used_and_the_slimmed_image_lacks(tmp_path):
    original = rootfs(tmp_path, "original", {"/app/app.py": b"", "/app/lazy.py": b"", "/app/gone.txt": b""})
    slimmed = rootfs(tmp_path, "slimmed", {"/app/app.py": b""})
    hints = likely_missing(
        trace("/app/app.py", "/app/lazy.py", "/etc/hosts", "/app/gone.txt"),  # /etc/hosts: the engine's, not the image's
        trace("/app/app.py", "/app/gone.txt"),  # opened by the slimmed run too (say, created at run time)
        original,
        slimmed,
    )
    assert hints == ("/app/lazy.py",)


def test_config_problems_name_each_run_setting_that_differs():
    original = facts(Cmd=["nginx", "-g", "daemon off;"], ExposedPorts={"80/tcp": {}}, Env=None, Labels={"a": "b"})
    assert config_problems(original, facts(Cmd=["nginx", "-g", "daemon off;"], ExposedPorts={"80/tcp": {}}, Env=[])) == []
    assert config_problems(original, facts(Cmd=["jq"])) == [
        "config Cmd: ['jq'], the original has ['nginx', '-g', 'daemon off;']",
        "config ExposedPorts: None, the original has {'80/tcp': {}}",
    ]


# ---------------------------------------------------------------- comparisons name what differs


def http_outcome(ok: bool, detail: str, **visits: tuple[int, str]) -> ProbeOutcome:
    fingerprint = {f"GET /{key}": {"status": status, "sha256": digest} for key, (status, digest) in visits.items()}
    return ProbeOutcome("http :8000", ok, detail, fingerprint)


def run(*outcomes: ProbeOutcome) -> RunOutcome:
    return RunOutcome("server", None, True, outcomes)


def test_a_divergent_http_probe_names_the_first_url_that_differs_in_crawl_order():
    original = http_outcome(True, "3 URLs, all 200", index=(200, "a"), items=(200, "b"), zone=(200, "c"))
    slimmed = http_outcome(False, "GET /items: status 500", index=(200, "a"), items=(500, "x"), zone=(200, "d"))
    [probe, state] = compare_runs(run(original), run(slimmed))
    assert not probe.same and state.same
    assert probe.slimmed == "GET /items: status 500 (first difference: GET /items: status 500, the original 200)"
    assert probe.checked == ("GET /index", "GET /items", "GET /zone")


def test_a_different_body_and_a_missing_url_are_named():
    original = http_outcome(True, "2 URLs, all 200", index=(200, "a"), about=(200, "b"))
    changed = http_outcome(True, "2 URLs, all 200", index=(200, "z"), about=(200, "b"))
    shorter = http_outcome(True, "1 URLs, all 200", index=(200, "a"))
    assert compare_runs(run(original), run(changed))[0].slimmed.endswith(
        "(first difference: GET /index: same status 200, different body)"
    )
    assert compare_runs(run(original), run(shorter))[0].slimmed.endswith(
        "(first difference: GET /about: not seen in the slimmed run)"
    )


def test_an_exec_probe_with_other_output_or_exit_code():
    original = ProbeOutcome("exec redis-cli ping", True, "exit 0: PONG", {"exit_code": 0, "sha256": "1"})
    other = ProbeOutcome("exec redis-cli ping", False, "exit 1: refused", {"exit_code": 1, "sha256": "2"})
    assert compare_runs(run(original), run(other))[0].slimmed == (
        "exit 1: refused (first difference: exit_code: 1, the original 0)"
    )


def test_a_container_that_did_not_start_is_an_outcome_to_compare():
    plan = ExercisePlan((HttpProbe(80), ExecProbe(("true",))), "server", timeout=5)
    slimmed = _not_started(plan, 127, 'exec: "nginx": executable file not found in $PATH')
    original = run(
        ProbeOutcome("http :80", True, "1 URLs, all 200", {"GET /": {"status": 200, "sha256": "a"}}),
        ProbeOutcome("exec true", True, "exit 0: no output", {"exit_code": 0, "sha256": "e"}),
    )
    probe, _, state = compare_runs(original, slimmed)
    assert probe.slimmed == 'not run: the container did not start (exec: "nginx": executable file not found in $PATH)'
    assert (state.original, state.slimmed, state.same) == ("running after probes", "stopped (exit 127)", False)
    assert [o.probe for o in _not_started(ExercisePlan((), "batch", 5), 127, "x").probes] == [BATCH_RUN]


# ---------------------------------------------------------------- the plan built from the options


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "probes.yaml"
    path.write_text(text)
    return path


def http_probes(plan: ExercisePlan) -> dict[int, HttpProbe]:
    return {probe.port: probe for probe in plan.probes if isinstance(probe, HttpProbe)}


def test_exposed_ports_get_a_default_probe_that_accepts_other_protocols():
    plan = exercise_plan(facts(ExposedPorts={"6379/tcp": {}}), RunOptions(exec_probes=(("redis-cli", "ping"),)))
    [redis] = http_probes(plan).values()
    assert (redis.port, redis.require_http, redis.paths) == (6379, False, ("/",))
    assert plan.ports == (6379,) and plan.mode == "server"
    assert container_spec("img", facts(Cmd=["redis-server"]), RunOptions(), plan).publish_tcp == (6379,)


def test_http_port_and_probe_file_requests_require_http(tmp_path):
    probe_file = write(tmp_path, "http:\n  - path: /items\n  - {path: /metrics, port: 9100}\n")
    plan = exercise_plan(facts(ExposedPorts={"8000/tcp": {}}), RunOptions(probe_file=probe_file))
    probes = http_probes(plan)
    assert probes[8000].require_http and [r.path for r in probes[8000].requests] == ["/items"]
    # A port only the probe file names gets a probe of its own (it used to be dropped), its requests only.
    assert probes[9100].require_http and probes[9100].paths == () and [r.path for r in probes[9100].requests] == [
        "/metrics"
    ]
    assert plan.ports == (8000, 9100)
    assert http_probes(exercise_plan(facts(ExposedPorts={"80/tcp": {}}), RunOptions(http_ports=(8080,))))[
        8080
    ].require_http


def test_ready_timeout_reaches_the_plan_and_its_probes():
    plan = exercise_plan(
        facts(ExposedPorts={"5432/tcp": {}}), RunOptions(exec_probes=(("pg_isready",),), ready_timeout=90)
    )
    assert plan.ready_timeout == 90
    assert {probe.ready_timeout for probe in plan.probes} == {90}


def test_a_request_with_no_port_needs_a_port_to_go_to(tmp_path):
    probe_file = write(tmp_path, "http:\n  - path: /items\n")
    with pytest.raises(UsageError, match="an http request names no port and the image exposes none"):
        exercise_plan(facts(), RunOptions(probe_file=probe_file))


def test_the_slimmed_run_asks_in_plain_http_where_the_original_spoke_no_http():
    """The original's run settled that no TLS answers on redis's port: the slimmed run does not wait for it again."""
    plan = ExercisePlan((HttpProbe(6379), HttpProbe(80), HttpProbe(8443, tls=True)), "server", timeout=30)
    original = RunOutcome("server", None, running_after_probes=True, probes=(
        ProbeOutcome("http :6379", True, "listening, not HTTP", dict(NOT_HTTP)),
        ProbeOutcome("http :80", True, "1 URL, all 200", {"GET /": {"status": 200, "sha256": "ab"}}),
        ProbeOutcome("http :8443", True, "listening, not HTTP", dict(NOT_HTTP)),
    ))
    schemes = {probe.port: probe.tls for probe in plan_like(plan, original).probes}
    assert schemes == {6379: False, 80: None, 8443: True}


@pytest.mark.parametrize("lingered, running, linger", [
    (0.42, True, 0.42),  # the original's trace settled 0.42 s after its probes: the slimmed run waits as long
    (0.05, True, QUIET),  # never less than the quiet time that settles a trace
    (3.0, True, SETTLE),  # nor more than the plan's own linger
    (0.05, False, SETTLE),  # an original that exited after its probes sets no bound on the slimmed image's exit
])
def test_the_slimmed_run_lingers_as_long_as_the_original_took_to_settle(lingered, running, linger):
    plan = ExercisePlan((HttpProbe(80),), "server", timeout=30)
    original = RunOutcome("server", None if running else 0, running_after_probes=running, probes=(), lingered=lingered)
    assert plan_like(plan, original).linger == pytest.approx(linger)


@pytest.mark.engine
def test_a_server_run_says_when_it_is_only_left_running(fixture_image):
    """What a build hands the CPU to (the compressed sizes) while the slimmed server lingers."""
    engine = DockerEngine()
    spec = ContainerSpec(image=fixture_image("jq"), entrypoint=("sh",),
                         command=("-c", "trap 'exit 0' TERM; sleep 60 & wait"))
    plan = ExercisePlan((ExecProbe(("true",)),), "server", timeout=30, linger=0.5)
    calls: list[float] = []
    run = run_exercised(engine, spec, plan, lambda: calls.append(time.monotonic()))
    assert run.probes[0].ok and run.running_after_probes
    [called] = calls  # once, after the probes, with the linger still ahead
    assert run.lingered >= 0.5 and time.monotonic() - called >= 0.5
