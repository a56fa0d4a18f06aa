"""exercise(): first against a scripted engine, then against real fixture containers (marked engine)."""
from __future__ import annotations

import hashlib
import ipaddress
import time
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

import probes.listening
from probes import ExecProbe, HostExecProbe, HttpProbe, HttpRequest, Target
from probes.interface import ProbeOutcome
from probes.listening import Listener, listeners
from slim.engine import ContainerSpec
from slim.errors import UsageError
from slim.build.exercise import AFTER_PROBES, BATCH_RUN, QUIET, SETTLE, ExercisePlan, exercise


class ScriptedEngine:
    """A container that runs until `exits_at` (monotonic; None: forever), then exits with `exit_code`."""

    def __init__(self, exits_at: float | None = None, exit_code: int = 0, stdout: bytes = b""):
        self.exits_at = exits_at
        self.exit_code = exit_code
        self._stdout = stdout
        self.waits: list[float] = []

    def is_running(self, container_id: str) -> bool:
        return self.exits_at is None or time.monotonic() < self.exits_at

    def is_paused(self, container_id: str) -> bool:
        return False

    def wait(self, container_id: str, timeout: float) -> int | None:
        self.waits.append(timeout)
        return None if self.is_running(container_id) else self.exit_code

    def logs(self, container_id: str, tail: int = 20) -> str:
        return "last words\n"

    def stdout(self, container_id: str) -> bytes:
        return self._stdout

    def host_port(self, container_id: str, port: int) -> int:
        return 40000 + port

    def pid(self, container_id: str) -> int | None:
        # None while running means its sockets cannot be observed: probes then run at once, as they did
        # before the wait for listening ports existed. Tests of that wait set `observed_pid`.
        return self.observed_pid if self.is_running(container_id) else None

    observed_pid: int | None = None


@dataclass(frozen=True)
class StubProbe:
    name: str
    ports: tuple[int, ...] = ()
    seconds: float = 0.0  # how long it takes
    seen: list = None  # the targets it ran against

    def run(self, target: Target) -> ProbeOutcome:
        if self.seen is not None:
            self.seen.append(target)
        time.sleep(self.seconds)
        return ProbeOutcome(self.name, True, "fine", {"n": 1})


def run_plan(engine, plan) -> tuple:
    phases: list[str] = []
    return exercise(engine, "c0ffee", plan, phases.append), phases


# ---------------------------------------------------------------- scripted engine


def test_batch_run_is_fingerprinted_by_exit_code_and_stdout():
    run, phases = run_plan(ScriptedEngine(exits_at=0, stdout=b"4\n"), ExercisePlan((), "batch", timeout=5))
    assert (run.mode, run.exit_code, run.running_after_probes, run.output_tail) == ("batch", 0, False, "")
    assert run.probes == (
        ProbeOutcome(BATCH_RUN, True, "exit 0: 4", {"exit_code": 0, "sha256": hashlib.sha256(b"4\n").hexdigest()}),
    )
    assert phases == []


def test_batch_run_that_fails_keeps_the_output_tail():
    run, _ = run_plan(ScriptedEngine(exits_at=0, exit_code=2), ExercisePlan((), "batch", timeout=5))
    assert not run.probes[0].ok and run.exit_code == 2
    assert run.output_tail == "last words\n"


def test_batch_run_still_running_at_timeout():
    engine = ScriptedEngine()
    run, _ = run_plan(engine, ExercisePlan((), "batch", timeout=5))
    assert (run.exit_code, run.running_after_probes) == (None, True)
    assert run.probes == (ProbeOutcome(BATCH_RUN, False, "still running after 5 s"),)
    assert engine.waits == [5]


def test_batch_mode_skips_probes_and_says_so():
    seen: list = []
    plan = ExercisePlan((StubProbe("exec true", seen=seen),), "batch", timeout=5)
    run, _ = run_plan(ScriptedEngine(exits_at=0), plan)
    assert run.probes[0].detail == "exit 0: no output; 1 probe(s) skipped in batch mode"
    assert seen == []


def test_server_runs_probes_in_order_with_phases_and_ports():
    seen: list = []
    probes = (StubProbe("http :80", (80,), seen=seen), StubProbe("host ./t.sh", (6379,), seen=seen))
    plan = ExercisePlan(probes, "server", timeout=30)
    engine = ScriptedEngine()
    run, phases = run_plan(engine, plan)
    assert phases == ["http :80", "host ./t.sh", AFTER_PROBES]
    assert [outcome.probe for outcome in run.probes] == ["http :80", "host ./t.sh"]
    assert (run.mode, run.exit_code, run.running_after_probes, run.output_tail) == ("server", None, True, "")
    assert dict(seen[0].ports) == {80: 40080, 6379: 46379} and seen[0].host == "127.0.0.1"
    assert engine.waits == [SETTLE]


def test_server_that_exited_skips_the_remaining_probes():
    plan = ExercisePlan((StubProbe("exec a", seconds=0.3), StubProbe("exec b")), "server", timeout=30)
    run, phases = run_plan(ScriptedEngine(exits_at=time.monotonic() + 0.1, exit_code=1), plan)
    assert phases == ["exec a", AFTER_PROBES]
    assert run.probes[1] == ProbeOutcome("exec b", False, "not run: the container exited (code 1)")
    assert (run.exit_code, run.running_after_probes, run.output_tail) == (1, False, "last words\n")


def test_probe_budget_is_shared_by_all_probes():
    plan = ExercisePlan((StubProbe("exec slow", seconds=0.3), StubProbe("exec next")), "server", timeout=0.2)
    run, _ = run_plan(ScriptedEngine(), plan)
    assert run.probes[1] == ProbeOutcome("exec next", False, "not run: the 0.2 s budget for probes is used up")


@pytest.mark.parametrize("continue_after, waited", [("probes", 1.0), ("12.5", 12.5), ("exit", 30)])
def test_continue_after_sets_how_long_the_container_is_left_running(continue_after, waited):
    engine = ScriptedEngine()
    run_plan(engine, ExercisePlan((), "server", timeout=30, continue_after=continue_after))
    assert engine.waits[0] == pytest.approx(waited, abs=0.5)


class PausingEngine(ScriptedEngine):
    """A container that never exits, and whose wait() really waits."""

    def wait(self, container_id: str, timeout: float) -> int | None:
        super().wait(container_id, timeout)
        time.sleep(timeout)
        return None


def test_a_quiet_trace_ends_the_wait_after_the_probes_early():
    engine = PausingEngine()
    run = exercise(engine, "c0ffee", ExercisePlan((), "server", timeout=30), lambda _phase: None, lambda: 0.0)
    assert engine.waits == [pytest.approx(QUIET, abs=0.05)]
    assert run.lingered == pytest.approx(QUIET, abs=0.05)


def test_an_untraced_run_lingers_as_its_plan_says():
    engine = PausingEngine()
    run, _ = run_plan(engine, ExercisePlan((), "server", timeout=30, linger=0.4))
    assert engine.waits == [0.4] and run.lingered == pytest.approx(0.4, abs=0.05)


def test_a_busy_trace_is_waited_for_until_settle_at_most():
    engine = PausingEngine()
    # Something new every instant: the wait goes on in steps of at most QUIET, and ends at SETTLE.
    exercise(engine, "c0ffee", ExercisePlan((), "server", timeout=30), lambda _phase: None, time.monotonic)
    assert len(engine.waits) > 1 and max(engine.waits) <= QUIET
    assert sum(engine.waits) == pytest.approx(SETTLE, abs=0.1)


@dataclass(frozen=True)
class TimedProbe:
    """Records when it ran and what the wait for listening ports saw."""

    name: str
    ports: tuple[int, ...] = ()
    seen: list = None

    def run(self, target: Target) -> ProbeOutcome:
        self.seen.append((time.monotonic(), target.readiness))
        return ProbeOutcome(self.name, True, "fine")


def listening_after(monkeypatch, seconds: float, port: int) -> None:
    """The scripted container's port `port` listens `seconds` from now."""
    started = time.monotonic()

    def read(pid: int) -> frozenset[Listener]:
        up = time.monotonic() - started >= seconds
        return frozenset({Listener(ipaddress.ip_address("0.0.0.0"), port)}) if up else frozenset()

    monkeypatch.setattr(probes.listening, "listeners", read)


def test_no_probe_runs_before_every_port_listens(monkeypatch):
    listening_after(monkeypatch, 0.4, 6379)
    seen: list = []
    engine = ScriptedEngine()
    engine.observed_pid = 4242
    plan = ExercisePlan((TimedProbe("exec redis-cli ping", (6379,), seen=seen),), "server", timeout=30)
    started = time.monotonic()
    run, _ = run_plan(engine, plan)
    [(ran_at, readiness)] = seen
    assert ran_at - started >= 0.35
    assert readiness.listening == {6379} and readiness.missing() == ()
    assert run.probes[0].ok


def test_a_container_that_exits_while_its_ports_are_awaited_fails_at_once(monkeypatch):
    listening_after(monkeypatch, 60, 80)
    engine = ScriptedEngine(exits_at=time.monotonic() + 0.3, exit_code=3)
    engine.observed_pid = 4242
    plan = ExercisePlan((TimedProbe("http :80", (80,), seen=[]),), "server", timeout=60, ready_timeout=30)
    started = time.monotonic()
    run, _ = run_plan(engine, plan)
    assert time.monotonic() - started < 5
    assert run.probes[0] == ProbeOutcome("http :80", False, "not run: the container exited (code 3)")
    assert (run.exit_code, run.running_after_probes, run.output_tail) == (3, False, "last words\n")


def test_the_wait_for_ports_is_bounded_by_the_ready_timeout(monkeypatch):
    listening_after(monkeypatch, 60, 80)
    seen: list = []
    engine = ScriptedEngine()
    engine.observed_pid = 4242
    plan = ExercisePlan((TimedProbe("http :8081", (8081,), seen=seen),), "server", timeout=60, ready_timeout=0.5)
    started = time.monotonic()
    run_plan(engine, plan)
    [(ran_at, readiness)] = seen
    assert 0.45 <= ran_at - started < 3
    assert readiness.missing() == (8081,)


def test_probe_names_must_be_unique():
    with pytest.raises(UsageError, match="two probes are named 'exec true'"):
        ExercisePlan((ExecProbe(("true",)), ExecProbe(("true",))), "server", timeout=1)


def test_plan_ports_are_the_probes_own():
    plan = ExercisePlan((HttpProbe(8080), ExecProbe(("true",)), HttpProbe(80)), "server", 1)
    assert plan.ports == (80, 8080)


# ---------------------------------------------------------------- real containers


@pytest.fixture(scope="module")
def engine():
    from slim.adapters.docker_engine import DockerEngine

    return DockerEngine()


@contextmanager
def started(engine, image: str, ports: tuple[int, ...], **spec):
    container_id = engine.create_container(ContainerSpec(image=image, publish_tcp=ports, **spec))
    try:
        engine.start(container_id)
        yield container_id
    finally:
        engine.remove_container(container_id)


def exercised(engine, image: str, plan: ExercisePlan, **spec) -> tuple:
    phases: list[str] = []
    with started(engine, image, plan.ports, **spec) as container_id:
        return exercise(engine, container_id, plan, phases.append), phases


@pytest.mark.engine
def test_nginx_crawl_reaches_every_linked_page(engine, fixture_image):
    plan = ExercisePlan((HttpProbe(80),), "server", timeout=60)
    run, phases = exercised(engine, fixture_image("nginx"), plan)
    [http] = run.probes
    assert http.ok, http.detail
    assert list(http.fingerprint) == [
        "GET /", "GET /style.css", "GET /logo.png", "GET /about.html", "GET /docs/guide.html", "GET /index.html",
    ]
    assert http.detail == "6 URLs, all 200"
    assert phases == ["http :80", AFTER_PROBES]
    assert (run.exit_code, run.running_after_probes) == (None, True)


@pytest.mark.engine
def test_nodeapp_pages_behind_links_and_a_volatile_report_fingerprint_the_same_twice(engine, fixture_image):
    report = HttpRequest("/report", ignore=(r'"generated":"[^"]*"',))
    plan = ExercisePlan((HttpProbe(3000, requests=(report,)),), "server", timeout=60)
    first, _ = exercised(engine, fixture_image("nodeapp"), plan)
    second, _ = exercised(engine, fixture_image("nodeapp"), plan)
    assert first.probes[0].ok, first.probes[0].detail
    assert list(first.probes[0].fingerprint) == ["GET /", "GET /a.html", "GET /deep/b.html", "GET /report"]
    assert first.probes[0].fingerprint == second.probes[0].fingerprint


REDIS_PING = """
import os, socket
address = (os.environ["SLIM_TARGET_HOST"], int(os.environ["SLIM_TARGET_PORT_6379"]))
with socket.create_connection(address, timeout=5) as redis:
    redis.sendall(b"PING\\r\\n")
    print(redis.recv(64).decode().strip())
"""


@pytest.mark.engine
def test_redis_exec_and_host_probes(engine, fixture_image, tmp_path):
    script = tmp_path / "ping.py"
    script.write_text(REDIS_PING)
    # The port is published as a build publishes it: the image's port gets an HTTP probe (redis answers no HTTP).
    plan = ExercisePlan(
        (ExecProbe(("redis-cli", "ping")), HostExecProbe(f"python3 {script}"), HttpProbe(6379)), "server", timeout=60
    )
    # No wait here: exercise() waits for 6379 to listen before the first probe, and the exec probe retries.
    with started(engine, fixture_image("redis"), plan.ports) as container_id:
        run = exercise(engine, container_id, plan, lambda _phase: None)
    exec_outcome, host_outcome, _ = run.probes
    assert (exec_outcome.ok, exec_outcome.detail) == (True, "exit 0: PONG")
    assert (host_outcome.ok, host_outcome.detail) == (True, "exit 0: +PONG")
    assert run.running_after_probes


@pytest.mark.engine
def test_redis_port_listens_but_is_not_http(engine, fixture_image):
    plan = ExercisePlan((HttpProbe(6379),), "server", timeout=60)
    run, _ = exercised(engine, fixture_image("redis"), plan)
    assert (run.probes[0].ok, run.probes[0].detail) == (True, "listening, not HTTP")


HTTP_GET = """
import os, urllib.request
url = f"http://{os.environ['SLIM_TARGET_HOST']}:{os.environ['SLIM_TARGET_PORT_80']}/about.html"
print(urllib.request.urlopen(url, timeout=5).status)
"""


@pytest.mark.engine
def test_a_host_probe_does_not_race_a_slow_server(engine, fixture_image, tmp_path):
    script = tmp_path / "get.py"
    script.write_text(HTTP_GET)
    # The HTTP probe of port 80 (which publishes it) runs after the host probe: the host probe meets the slow server.
    plan = ExercisePlan((HostExecProbe(f"python3 {script}"), HttpProbe(80)), "server", timeout=60)
    run, _ = exercised(
        engine, fixture_image("nginx"), plan, entrypoint=("sh", "-c"), command=("sleep 2; exec nginx -g 'daemon off;'",)
    )
    assert (run.probes[0].ok, run.probes[0].detail) == (True, "exit 0: 200")


@pytest.mark.engine
def test_engine_pid_sees_the_container_sockets_and_exec_times_out(engine, fixture_image):
    plan = ExercisePlan((HttpProbe(80),), "server", timeout=60)
    with started(engine, fixture_image("nginx"), plan.ports) as container_id:
        exercise(engine, container_id, plan, lambda _phase: None)
        pid = engine.pid(container_id)
        assert any(listener.port == 80 and listener.reachable for listener in listeners(pid))
        began = time.monotonic()
        hung = engine.exec(container_id, ("sleep", "300"), timeout=1)
        assert hung.timed_out and time.monotonic() - began < 8
        processes = engine.exec(container_id, ("ps", "-eo", "args"), timeout=10).output.decode()
        assert "sleep 300" not in processes  # the timed-out exec was killed
        engine.stop(container_id, timeout=1)
        assert engine.pid(container_id) is None


@pytest.mark.engine
def test_jq_batch_run(engine, fixture_image):
    plan = ExercisePlan((HttpProbe(80),), "batch", timeout=60)
    run, phases = exercised(engine, fixture_image("jq"), plan)
    assert (run.mode, run.exit_code, run.running_after_probes) == ("batch", 0, False)
    assert run.probes == (
        ProbeOutcome(
            BATCH_RUN,
            True,
            "exit 0: 4; 1 probe(s) skipped in batch mode",
            {"exit_code": 0, "sha256": hashlib.sha256(b"4\n").hexdigest()},
        ),
    )
    assert phases == []


@pytest.mark.engine
def test_wrong_port_fails_the_probe_with_a_clear_detail(engine, fixture_image):
    plan = ExercisePlan((HttpProbe(8080, ready_timeout=3),), "server", timeout=60, ready_timeout=3)
    run, _ = exercised(engine, fixture_image("nginx"), plan)
    assert not run.probes[0].ok
    assert run.probes[0].detail == "port 8080 did not listen in the container within 3 s (it listens on 80)"
    assert run.running_after_probes


@pytest.mark.engine
def test_a_server_that_exits_before_answering(engine, fixture_image):
    plan = ExercisePlan((HttpProbe(80, ready_timeout=30),), "server", timeout=60)
    started_at = time.monotonic()
    run, _ = exercised(
        engine, fixture_image("nginx"), plan, entrypoint=("sh", "-c"), command=("echo giving up; sleep 1; exit 3",)
    )
    assert run.probes[0].detail == "not run: the container exited (code 3)"
    assert (run.exit_code, run.running_after_probes) == (3, False)
    assert "giving up" in run.output_tail
    assert time.monotonic() - started_at < 20
