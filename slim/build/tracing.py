"""Run the container under the tracer while probes exercise it -> Trace.

The container starts behind a gate (slim/adapters/c_helpers): the tracer watches the container's overlay
filesystem once the engine has mounted it (reached through the gate's /proc/PID/root, whatever engine and
storage mode mounted it), and only then lets the gate exec the real program, so the very first open is
seen. The tracer is passed in (slim.tracer.Tracer), as the engine is.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import shutil
import signal
from pathlib import Path
from typing import Callable, Iterator

from slim.adapters.c_helpers import gate_binary, lookupd_binary
from slim.adapters.processes import catches_signal
from slim.engine import BindMount, ContainerSpec, Engine
from slim.errors import SlimError
from slim.model import RunOutcome, Seen, Trace
from slim.ownership import enter_temp_dir, owned_container, retire, start_owned
from slim.tracer import Tracer

from .exercise import AFTER_PROBES
from .lookups import LOOKUP_MECHANISMS, LookupRecorder

GATE_MOUNT = "/.slimtrace"
GATE_NAME = "gate"
GO_NAME = "go"
LOOKUP_SOCKET_NAME = "lookups"  # gate.c's LOOKUP_SOCKET
STARTUP = "startup"
SHUTDOWN = "shutdown"
# What `docker stop` gives an application that handles its stop signal, as the engine's default does.
STOP_TIMEOUT = 10
EXIT_GRACE = 5  # seconds beyond it for the engine's SIGKILL to end PID 1

# exercise(container_id, set_phase, last_news): last_news() is when the trace last saw something new
# (time.monotonic()), so the exercise can wait for the application to go quiet.
Exercise = Callable[[str, Callable[[str], None], Callable[[], float]], RunOutcome]


def run_traced(
    engine: Engine,
    tracer: Tracer,
    spec: ContainerSpec,
    exercise: Exercise,
    *,
    lookups: bool = True,
    lookup_mechanisms: tuple[str, ...] = LOOKUP_MECHANISMS,
    on_probed: Callable[[Seen], None] = lambda _seen: None,
) -> Trace:
    """Run `spec` behind the gate, traced from its first instruction, while `exercise` probes it.

    `spec.entrypoint + spec.command` must be the real argv. `exercise(container_id, set_phase, last_news)`
    runs the probes, labelling each with set_phase, and says how the container behaved. `lookups=False` leaves the
    lookup tracer out (opens only); `lookup_mechanisms` are the ways to trace lookups to try, in order.
    `on_probed` gets what the trace has seen when the exercise marks the phase AFTER_PROBES (a server's probes
    are done; it settles and stops after that). The container and the gate's temp dir are removed whatever
    happens.
    """
    argv = (spec.entrypoint or ()) + (spec.command or ())
    if not argv:
        raise ValueError("run_traced needs the real argv in spec.entrypoint + spec.command")
    gate = gate_binary()
    with contextlib.ExitStack() as cleanup:
        gate_dir = enter_temp_dir(cleanup, "gate")
        _install_gate(gate, gate_dir)
        session = cleanup.enter_context(tracer.session())
        # Listening before the container starts: the gate connects as soon as it may go.
        socket_path = gate_dir / LOOKUP_SOCKET_NAME if lookups else None
        lookup_recorder = cleanup.enter_context(
            LookupRecorder(socket_path, lookupd_binary(), STARTUP, lookup_mechanisms)
        )
        container_id = cleanup.enter_context(owned_container(engine, _gated(spec, argv, gate_dir), "trace"))
        start_owned(engine, container_id)
        recorder = cleanup.enter_context(session.watch(container_root(engine, container_id), STARTUP))
        (gate_dir / GO_NAME).touch()

        def set_phase(name: str) -> None:
            recorder.set_phase(name)
            lookup_recorder.set_phase(name)
            if name == AFTER_PROBES:
                on_probed(Seen(recorder.so_far(), lookup_recorder.so_far()))

        def last_news() -> float:
            return max(recorder.last_news(), lookup_recorder.last_news())

        run = exercise(container_id, set_phase, last_news)
        # What the application opens while shutting down gracefully is needed too.
        set_phase(SHUTDOWN)
        _stop(engine, container_id, spec.stop_signal)
        paths, health = recorder.stop()
        looked_up, lookup_health = lookup_recorder.stop()
    return Trace(paths=paths, health=health, run=run, lookups=looked_up, lookup_health=lookup_health)


def _stop(engine: Engine, container_id: str, stop_signal: str | None) -> None:
    """Stop the container as `docker stop` would: its stop signal, then SIGKILL after STOP_TIMEOUT seconds,
    sent to its first process directly through a pidfd. The engine's stop call reaches the process later,
    and much later while the engine is busy with the image loaded beside it (nginx's SIGTERM took 0.1 to
    0.9 s to arrive that way, 20 to 70 ms direct).

    A PID 1 with no handler for its stop signal gets SIGKILL at once: the kernel never delivers a signal to
    a PID namespace's init that has no handler for it, so such a process would only die at the timeout,
    having run no shutdown code in between (and traced nothing more). The trace is complete once PID 1 has
    exited (the kernel kills the rest of its namespace with it): that is waited for here; the engine sees
    the container exit, and its removal goes on in the background."""
    pid = engine.pid(container_id)
    number = signal_number(stop_signal or "SIGTERM")
    with watched_process(pid) as process:  # watched from before any signal, so no exit goes unseen
        if process is None:
            return  # exited already
        if number is None:  # a stop signal only the engine can name
            retire(engine.stop, container_id, STOP_TIMEOUT)
            process.wait(STOP_TIMEOUT + EXIT_GRACE)
            return
        if catches_signal(pid, number):
            process.signal(number)
            if process.wait(STOP_TIMEOUT):
                return
        process.signal(signal.SIGKILL)
        process.wait(EXIT_GRACE)


class WatchedProcess:
    """A process held by a pidfd: signalled and awaited without the risk of a recycled pid."""

    def __init__(self, descriptor: int):
        self._descriptor = descriptor

    def wait(self, seconds: float) -> bool:
        """Whether the process has exited, waiting at most `seconds` for it."""
        return bool(select.select([self._descriptor], [], [], seconds)[0])  # readable once it has exited

    def signal(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # exited meanwhile
            signal.pidfd_send_signal(self._descriptor, number)


@contextlib.contextmanager
def watched_process(pid: int | None) -> Iterator[WatchedProcess | None]:
    """Process `pid` held by a pidfd; None when there is no such process (or no pid)."""
    try:
        descriptor = os.pidfd_open(pid) if pid is not None else None
    except ProcessLookupError:
        descriptor = None
    if descriptor is None:
        yield None
        return
    try:
        yield WatchedProcess(descriptor)
    finally:
        os.close(descriptor)


def signal_number(name: str) -> int | None:
    """A StopSignal as images spell it ("SIGQUIT", "QUIT", "3") -> its number; None when unknown."""
    if name.isdigit():
        return int(name)
    with contextlib.suppress(KeyError):
        return signal.Signals["SIG" + name.upper().removeprefix("SIG")].value
    return None


def container_root(engine: Engine, container_id: str) -> Path:
    """The started container's root filesystem, reached through its first process (the gate, waiting for
    go): the same path whatever engine and storage mode mounted it (the tracer refuses it unless it is the
    container's own overlay)."""
    pid = engine.pid(container_id)
    if pid is None:
        raise SlimError(f"the traced container stopped before tracing began{_last_words(engine, container_id)}")
    return Path(f"/proc/{pid}/root")


def _last_words(engine: Engine, container_id: str) -> str:
    logs = engine.logs(container_id, tail=3).strip()
    return f" ({' | '.join(logs.splitlines())})" if logs else ""


def _install_gate(gate: Path, gate_dir: Path) -> None:
    # 0755: the container may run as any user, and it must reach the gate through this directory.
    gate_dir.chmod(0o755)
    try:
        os.link(gate, gate_dir / GATE_NAME)
    except OSError:  # the cache is on another filesystem than the temp dir
        shutil.copy2(gate, gate_dir / GATE_NAME)


def _gated(spec: ContainerSpec, argv: tuple[str, ...], gate_dir: Path) -> ContainerSpec:
    return dataclasses.replace(
        spec,
        entrypoint=(f"{GATE_MOUNT}/{GATE_NAME}",),
        command=argv,
        mounts=spec.mounts + (BindMount(source=str(gate_dir), target=GATE_MOUNT, read_only=True),),
    )
