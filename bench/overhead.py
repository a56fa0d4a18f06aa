"""Tracing overhead: nginx requests/second under wrk, with and without the tracer attached.

Each round runs the same container spec three times: plain, under slim.build.tracing.run_traced exactly as in a
build (behind the gate, the overlay marked, the recorder reading events, the lookup filter answered), and
under run_traced with opens only (`--no-lookups`), with wrk as the exercise. The order rotates between
rounds so that drift (page cache, thermal, a noisy neighbour) falls on every side alike, and the ratios are
taken round by round.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable

from slim.engine import ContainerSpec, Engine
from slim.model import RunOutcome, Trace
from slim.adapters.fanotify_tracer import FanotifyTracer
from slim.build.tracing import run_traced

from .engine_turns import engine_turn
from .model import OverheadResult, OverheadRound
from .stats import paired_ratios, summarize

WRK_THREADS = 2
WRK_CONNECTIONS = 32
WRK_SECONDS = 10
# A short unmeasured run first, on both sides: the first requests of a fresh container pay for cold
# caches (and, traced, for the one event per file), which 10 s of load would otherwise fold in unevenly.
WARMUP_SECONDS = 2
READY_SECONDS = 60.0
PORT = 80
UNTRACED, TRACED, OPENS_ONLY = "untraced", "traced", "opens only"  # traced: as a build traces, lookups included
CONDITIONS = (UNTRACED, TRACED, OPENS_ONLY)


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    errors: int  # socket errors (connect, read, write, timeout) plus non-2xx/3xx answers


def wrk_argv(host_port: int, seconds: int = WRK_SECONDS) -> list[str]:
    return ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", f"http://127.0.0.1:{host_port}/"]


def parse_wrk(output: str) -> WrkResult:
    """The numbers wrk prints at the end of a run."""
    found = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if found is None:
        raise ValueError(f"no Requests/sec line in wrk's output: {output.strip()[-200:]!r}")
    errors = 0
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket:
        errors += sum(int(count) for count in socket.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return WrkResult(float(found.group(1)), errors)


def measure(engine: Engine, image: str, rounds: int, progress: Callable[[str], None]) -> OverheadResult:
    facts = engine.inspect_image(image)
    # The explicit argv, as a build runs it (run_traced needs it to exec behind the gate).
    argv = facts.entrypoint + facts.cmd
    spec = ContainerSpec(image=facts.id, entrypoint=argv[:1], command=argv[1:], publish_tcp=(PORT,))
    results: list[OverheadRound] = []
    events: list[int] = []
    lookup_calls: list[int] = []
    lookups_note = lookup_mechanism = ""
    for index in range(rounds):
        order = CONDITIONS[index % len(CONDITIONS):] + CONDITIONS[:index % len(CONDITIONS)]
        load_before = os.getloadavg()[0]
        measured: dict[str, WrkResult] = {}
        for condition in order:
            progress(f"overhead round {index + 1}/{rounds}: {condition}")
            with engine_turn():
                if condition == UNTRACED:
                    measured[condition] = _untraced(engine, spec)
                    continue
                measured[condition], trace = _traced(engine, spec, lookups=condition == TRACED)
                if condition == TRACED:
                    events.append(trace.health.events)
                    lookup_calls.append(trace.lookup_health.calls)
                    lookups_note, lookup_mechanism = trace.lookup_health.note, trace.lookup_health.mechanism
        results.append(OverheadRound(
            index=index + 1,
            first=order[0],
            untraced_rps=measured[UNTRACED].requests_per_second,
            traced_rps=measured[TRACED].requests_per_second,
            untraced_errors=measured[UNTRACED].errors,
            traced_errors=measured[TRACED].errors,
            load_before=round(load_before, 2),
            opens_only_rps=measured[OPENS_ONLY].requests_per_second,
            opens_only_errors=measured[OPENS_ONLY].errors,
        ))
    untraced = [r.untraced_rps for r in results]
    traced = [r.traced_rps for r in results]
    opens_only = [r.opens_only_rps for r in results]
    return OverheadResult(
        image=image,
        command=" ".join(wrk_argv(0)).replace(":0/", ":PORT/") + f" (after a {WARMUP_SECONDS} s warm-up)",
        rounds=tuple(results),
        untraced=summarize(untraced),
        traced=summarize(traced),
        ratio=summarize(paired_ratios(traced, untraced)),
        trace_events=tuple(events),
        lookup_calls=tuple(lookup_calls),
        lookups_note=lookups_note,
        lookup_mechanism=lookup_mechanism,
        opens_only=summarize(opens_only),
        opens_only_ratio=summarize(paired_ratios(opens_only, untraced)),
    )


def _traced(engine: Engine, spec: ContainerSpec, lookups: bool) -> tuple[WrkResult, Trace]:
    measured: list[WrkResult] = []

    def exercise(container_id: str, set_phase: Callable[[str], None], _news: Callable[[], float]) -> RunOutcome:
        set_phase("wrk")
        measured.append(_load(engine, container_id))
        return RunOutcome(mode="server", exit_code=None, running_after_probes=True, probes=())

    trace = run_traced(engine, FanotifyTracer(), spec, exercise, lookups=lookups)
    return measured[0], trace


def _untraced(engine: Engine, spec: ContainerSpec) -> WrkResult:
    container_id = engine.create_container(spec)
    try:
        engine.start(container_id)
        result = _load(engine, container_id)
        engine.stop(container_id)  # as run_traced does, so both sides end the same way
        return result
    finally:
        engine.remove_container(container_id)


def _load(engine: Engine, container_id: str) -> WrkResult:
    host_port = engine.host_port(container_id, PORT)
    if host_port is None:
        raise RuntimeError(f"nginx exited before port {PORT} was published: {engine.logs(container_id)}")
    _await_ready(host_port)
    _wrk(host_port, WARMUP_SECONDS)
    return parse_wrk(_wrk(host_port, WRK_SECONDS))


def _wrk(host_port: int, seconds: int) -> str:
    done = subprocess.run(wrk_argv(host_port, seconds), capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {(done.stderr or done.stdout).strip()[-200:]}")
    return done.stdout


def _await_ready(host_port: int) -> None:
    """Until GET / answers 200: docker-proxy accepts connections before nginx listens."""
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/", timeout=5) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not answer on 127.0.0.1:{host_port} within {READY_SECONDS:g} s")
        time.sleep(0.2)
