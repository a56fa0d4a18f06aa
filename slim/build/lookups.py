"""Record the paths the traced container only checks (stat, access, readlink, chdir, O_PATH opens).

fanotify reports opens; a start script's `[ -f /usr/share/app/schema.sql ]` or a program's access() opens
nothing, yet the image breaks without the file. Two ways to see these calls, both from the program's
first instruction, the first the host allows:
- eBPF (slim/adapters/bpf_lookups.py): a program on the kernel's raw sys_enter tracepoint records each
  path once, in the kernel, without stopping the caller (a repeated stat costs a fraction of a
  microsecond). The gate's process is traced from when it connects, and every process it starts.
- seccomp (slim/adapters/c_helpers/gate.c, lookupd.c): the gate installs a filter that stops just these
  calls and hands its listener to a supervisor, which lets each call continue and reports each path once
  (every call waits for it: about 4 µs a call).
Either way paths are made absolute as the container sees them and labelled with the phase of the run.

Only the gate's descendants are traced: other containers and the host are never seen, and a process
that `docker exec` starts (an exec probe) is not either.
"""
from __future__ import annotations

import os
import select
from pathlib import Path, PurePosixPath

from slim.adapters.c_helpers import cache_dir
from slim.adapters.bpf import BpfUnavailable
from slim.adapters.bpf_lookups import BpfLookups
from slim.adapters.processes import namespace_init_pidfd
from slim.adapters.seccomp import (
    GateConnection, GateSocket, LookupRecord, LookupsUnavailable, Supervisor, check_kernel, parse_records,
)
from slim.model import Lookup, LookupHealth
from slim.recorder_thread import RecorderThread


EBPF, SECCOMP = "ebpf", "seccomp"
LOOKUP_MECHANISMS = (EBPF, SECCOMP)  # the first the host allows is used


class LookupRecorder(RecorderThread):
    """Listens on the gate's socket; traces the gate with eBPF, or else takes the seccomp filter's listener
    and runs lookupd on it; reads what either reports, on its own thread.

    Use as a context manager (leaving it stops the thread and ends lookupd), and call stop() for the
    lookups once the container is gone.
    """

    def __init__(self, socket_path: Path | None, supervisor: Path, phase: str,
                 mechanisms: tuple[str, ...] = LOOKUP_MECHANISMS):
        """`socket_path` None: lookups are not traced (the gate finds no socket and runs the program unfiltered).
        `mechanisms`: those to try, in order."""
        super().__init__("lookups", "slimtrace-lookups", phase)
        self._supervisor_binary = supervisor
        self._mechanisms = mechanisms
        self._mechanism = ""
        self._bpf: BpfLookups | None = None
        self._admitted = False
        self._lookups: list[Lookup] = []
        self._calls = 0
        self._note = ""
        self._gate: GateSocket | None = None
        self._supervisor: Supervisor | None = None
        self._unparsed = b""
        self._container_exit: int | None = None  # a pidfd of the container's first process
        try:
            if socket_path is None:
                raise LookupsUnavailable("turned off (--no-lookups)")
            self._gate = GateSocket(str(socket_path))
        except (LookupsUnavailable, OSError) as why:  # no socket: the gate runs the program unfiltered
            self._note = str(why)
        self._start()

    def so_far(self) -> tuple[Lookup, ...]:
        """The lookups recorded until now, sorted as stop() returns them, while recording goes on."""
        return tuple(sorted(list(self._lookups), key=lambda lookup: (lookup.path, lookup.follow)))

    def stop(self) -> tuple[tuple[Lookup, ...], LookupHealth]:
        self._stopped()
        lookups = self.so_far()
        if not self._admitted:
            return lookups, LookupHealth(traced=False, calls=self._calls, note=self._note)
        return lookups, LookupHealth(traced=True, calls=self._calls, note=self._note, mechanism=self._mechanism)

    def _release(self) -> None:
        if self._bpf is not None:
            self._bpf.close()
        if self._container_exit is not None:
            os.close(self._container_exit)
        if self._supervisor is not None:
            self._supervisor.close()
        if self._gate is not None:
            self._gate.__exit__(None, None, None)

    def _run(self) -> None:
        poller = self._poller()
        if self._gate is not None:
            # Ready before the gate connects: the container takes far longer to start than this.
            self._choose_mechanism(poller)
            poller.register(self._gate.fileno(), select.POLLIN)
        while (ready := self._ready(poller)) is not None:
            self._serve(poller, ready)
        self._finish()

    def _serve(self, poller: select.poll, ready: set[int]) -> None:
        if self._container_exit is not None and self._container_exit in ready:
            poller.unregister(self._container_exit)
            self._supervisor.finish()
        if self._supervisor is not None and self._supervisor.fileno() in ready:
            output = self._supervisor.read()
            if not output:  # it exited: _finish will say how
                poller.unregister(self._supervisor.fileno())
            self._take(output)
        if self._bpf is not None and self._bpf.fileno() in ready:
            self._take_records(self._bpf.read())
        if self._gate is not None and self._gate.fileno() in ready:
            poller.unregister(self._gate.fileno())
            self._admit(self._gate.accept(), poller)

    def _choose_mechanism(self, poller: select.poll) -> None:
        """eBPF where the host allows it (the reason it does not goes in the note), else seccomp."""
        why_not = []
        for mechanism in self._mechanisms:
            try:
                if mechanism == EBPF:
                    self._bpf = BpfLookups(cache_dir())
                    poller.register(self._bpf.fileno(), select.POLLIN)
                else:
                    check_kernel()
            except (BpfUnavailable, LookupsUnavailable) as why:
                why_not.append(f"{mechanism}: {why}")
                continue
            self._mechanism = mechanism
            break
        self._note = "; ".join(why_not)

    def _admit(self, gate: GateConnection, poller: select.poll) -> None:
        if self._mechanism == EBPF:
            self._bpf.follow(gate.pid)  # before the gate hears it may go on
            gate.say_traced()
            self._admitted = True
        elif self._mechanism == SECCOMP:
            self._start_supervisor(gate, poller)
        else:
            gate.close()  # no word: the program runs untraced

    def _start_supervisor(self, gate: GateConnection, poller: select.poll) -> None:
        try:
            listener = gate.receive_listener()
        except LookupsUnavailable as why:
            self._note = str(why)
            return
        self._admitted = True
        self._supervisor = Supervisor(self._supervisor_binary, listener)
        poller.register(self._supervisor.fileno(), select.POLLIN)
        # lookupd ends with the container's first process (the gate become the program): the engine holds
        # the container as running while a process answers its seccomp listener (up to a second seen here).
        try:
            self._container_exit = namespace_init_pidfd(gate.pid)
        except ProcessLookupError:  # a program that is done already
            self._supervisor.finish()
            return
        if self._container_exit is not None:
            poller.register(self._container_exit, select.POLLIN)

    def _finish(self) -> None:
        """Once the container is gone: the last records and the count of calls."""
        if self._bpf is not None:
            self._finish_bpf()
            return
        if self._supervisor is None:
            self._note = self._note or "the gate never handed over its seccomp listener"
            return
        self._supervisor.finish()
        while output := self._supervisor.read():
            self._take(output)
        if self._supervisor.close() != 0:
            raise OSError("the lookup supervisor failed")

    def _finish_bpf(self) -> None:
        if not self._admitted:
            self._note = self._note or "the gate never connected"
        self._take_records(self._bpf.read())
        self._calls, lost = self._bpf.calls()
        losses = [f"{lost} lookups found the kernel's buffer full"] if lost else []
        if self._bpf.unplaced:
            losses.append(f"{self._bpf.unplaced} relative lookups by processes gone before they could be placed")
        self._note = "; ".join(losses + ([self._note] if self._note else []))

    def _take(self, output: bytes) -> None:
        records, calls, self._unparsed = parse_records(self._unparsed + output)
        self._take_records(records)
        if calls is not None:
            self._calls = calls

    def _take_records(self, records: list[LookupRecord]) -> None:
        self._lookups += [self._lookup(record) for record in records]
        if records:
            self._noted()

    def _lookup(self, record: LookupRecord) -> Lookup:
        return Lookup(path=PurePosixPath(record.path), follow=record.follow, program=record.program, phase=self._phase)
