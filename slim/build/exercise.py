"""One run of a started container, exercised: a batch run is awaited, a server is probed.

The caller created and started the container (publishing `ExercisePlan.ports`) and owns it: nothing here
stops or removes it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

from probes import LOOPBACK, ExecProbe, HttpProbe, Probe, Target
from probes.base import command_outcome
from probes.interface import ProbeOutcome
from probes.listening import Socket, await_listening, listening_sockets

from . import volatility
from slim.engine import Engine
from slim.errors import UsageError
from slim.model import RunOutcome

BATCH_RUN = "batch run"  # the probe name of a batch container's own run
AFTER_PROBES = "after probes"  # the phase once the probes are done, while the app settles
SETTLE = 1.0  # seconds for start-up work the app finishes after the probes (lazy writes), at most
# A traced server has settled once its trace saw nothing new for this long after the probes (SETTLE at
# most): an application still opening files is waited for, a quiet one is not.
QUIET = 0.3
# Probes run a second time when volatility is learned: asking again is harmless. Host probes are the
# user's own scripts (an integration test may not be idempotent): they run once.
REPEATABLE = (HttpProbe, ExecProbe)


@dataclass(frozen=True)
class ExercisePlan:
    probes: tuple[Probe, ...]
    mode: str  # "server" | "batch"
    timeout: float  # batch: seconds until it must have exited; server: overall budget for the probes
    # server, after the probes (checked by the CLI): "probes" (wait until the trace is QUIET, SETTLE seconds
    # at most; `linger` seconds when no trace runs beside), "exit" (wait for the container to exit, within
    # what is left of `timeout`) or a number of seconds to wait.
    continue_after: str = "probes"
    # server: seconds to wait, before any probe runs, until every port of `ports` listens in the container
    ready_timeout: float = 30.0
    # server: 2 runs the repeatable probes twice, and what they see differently is volatile (the original's
    # runs); 1 for the runs compared with them.
    passes: int = 1
    # server: sockets (loopback ones too) to wait for as well before probing: those the original listened on.
    sockets: tuple[Socket, ...] = ()
    # server, continue_after "probes" with no trace beside: seconds to leave it running after the probes
    # (a verification run: as long as the traced original took to settle).
    linger: float = SETTLE

    def __post_init__(self) -> None:
        # Verification pairs the outcomes of two runs by probe name.
        names = [probe.name for probe in self.probes]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise UsageError(f"two probes are named {twice[0]!r}: probe names must be unique in a run")

    @property
    def ports(self) -> tuple[int, ...]:
        """Container TCP ports the container must publish for this plan."""
        return tuple(sorted({port for probe in self.probes for port in probe.ports}))


def exercise(
    engine: Engine,
    container_id: str,
    plan: ExercisePlan,
    mark_phase: Callable[[str], None],
    last_news: Callable[[], float] | None = None,
) -> RunOutcome:
    """Run the plan against the started container; `mark_phase(name)` is called as each probe begins.
    `last_news()`, when a trace runs beside, says when it last saw something new (time.monotonic())."""
    if plan.mode == "batch":
        return _batch(engine, container_id, plan)
    return _serve(engine, container_id, plan, mark_phase, last_news)


def _batch(engine: Engine, container_id: str, plan: ExercisePlan) -> RunOutcome:
    exit_code = engine.wait(container_id, plan.timeout)
    if exit_code is None:
        late = ProbeOutcome(BATCH_RUN, False, f"still running after {plan.timeout:g} s")
        return RunOutcome("batch", None, True, (late,), engine.logs(container_id))
    outcome = command_outcome(BATCH_RUN, exit_code, engine.stdout(container_id))
    if plan.probes:  # they all need a running container, and this one has exited
        outcome = replace(outcome, detail=f"{outcome.detail}; {len(plan.probes)} probe(s) skipped in batch mode")
    tail = engine.logs(container_id) if exit_code else ""
    return RunOutcome("batch", exit_code, False, (outcome,), tail)


def _serve(
    engine: Engine,
    container_id: str,
    plan: ExercisePlan,
    mark_phase: Callable[[str], None],
    last_news: Callable[[], float] | None,
) -> RunOutcome:
    deadline = time.monotonic() + plan.timeout
    # No probe runs before the server listens, so an exec probe does not race its start-up either.
    readiness = await_listening(
        engine, container_id, plan.ports, min(plan.ready_timeout, plan.timeout), sockets=plan.sockets
    )
    target = Target(
        engine=engine,
        container_id=container_id,
        host=LOOPBACK,
        ports=_published(engine, container_id, plan.ports),
        deadline=deadline,
        readiness=readiness,
    )
    outcomes = tuple(_probe(probe, target, plan.timeout, mark_phase) for probe in plan.probes)
    if plan.passes > 1:
        outcomes = tuple(
            volatility.learn(outcome, _probe(probe, target, plan.timeout, mark_phase))
            if isinstance(probe, REPEATABLE) and outcome.ok else outcome
            for probe, outcome in zip(plan.probes, outcomes)
        )
    listening = listening_sockets(engine, container_id)
    # A frozen application still listens (the kernel accepts connections) but never answers: what the
    # probes saw then says nothing about the image.
    paused = engine.is_paused(container_id)
    mark_phase(AFTER_PROBES)
    probed_at = time.monotonic()
    if plan.continue_after == "probes" and last_news is not None:
        exit_code = _settle(engine, container_id, last_news)
    else:
        # wait() doubles as the pause: it returns early, with the exit code, if the container exits meanwhile.
        exit_code = engine.wait(container_id, _linger(plan, target))
    lingered = time.monotonic() - probed_at
    tail = engine.logs(container_id) if exit_code is not None else ""
    return RunOutcome("server", exit_code, exit_code is None, outcomes, tail, listening, paused, lingered)


def _published(engine: Engine, container_id: str, ports: tuple[int, ...]) -> dict[int, int]:
    """Host ports by container port; empty when the container already stopped (each probe then says so)."""
    found = {port: engine.host_port(container_id, port) for port in ports}
    return {port: host_port for port, host_port in found.items() if host_port is not None}


def _probe(probe: Probe, target: Target, budget: float, mark_phase: Callable[[str], None]) -> ProbeOutcome:
    if not target.engine.is_running(target.container_id):
        exit_code = target.engine.wait(target.container_id, 0)
        return ProbeOutcome(probe.name, False, f"not run: the container exited (code {exit_code})")
    if target.seconds_left() <= 0:
        return ProbeOutcome(probe.name, False, f"not run: the {budget:g} s budget for probes is used up")
    mark_phase(probe.name)
    outcome = probe.run(target)
    waited = target.readiness.describe() if target.readiness else ""
    return replace(outcome, readiness="; ".join(filter(None, (waited, outcome.readiness))))


def _settle(engine: Engine, container_id: str, last_news: Callable[[], float]) -> int | None:
    """Wait until the trace has seen nothing new for QUIET seconds since the probes ended, SETTLE seconds at
    most; the exit code if the container exits meanwhile."""
    began = time.monotonic()
    while True:
        quiet_at = max(last_news(), began) + QUIET
        seconds = min(quiet_at, began + SETTLE) - time.monotonic()
        if seconds <= 0:
            return None
        exit_code = engine.wait(container_id, seconds)
        if exit_code is not None:
            return exit_code


def _linger(plan: ExercisePlan, target: Target) -> float:
    """Seconds to leave the container running after the probes."""
    if plan.continue_after == "probes":
        return plan.linger
    if plan.continue_after == "exit":
        return target.seconds_left()
    return float(plan.continue_after)

