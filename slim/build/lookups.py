"""Record the paths the traced container only checks (stat, access, readlink, chdir, O_PATH opens).

fanotify reports opens; a start script's `[ -f /usr/share/app/schema.sql ]` or a program's access() opens
nothing, yet the image breaks without the file. The gate installs a seccomp filter that stops just these
calls (slim/adapters/c_helpers/gate.c) and hands its listener to the LookupRecorder here, which runs the
supervisor (slim/adapters/c_helpers/lookupd.c: it lets each call continue and reports each path once, made
absolute as the container sees it) and folds what it reports into Lookups, labelled with the phase of the run.

Only the gate's descendants are filtered: other containers and the host are never seen, and a process
that `docker exec` starts (an exec probe) is not either. Nothing is lost: a stopped call waits for us.
"""
from __future__ import annotations

import os
import select
from pathlib import Path, PurePosixPath

from slim.adapters.processes import namespace_init_pidfd
from slim.adapters.seccomp import GateSocket, LookupRecord, LookupsUnavailable, Supervisor, check_kernel, parse_records
from slim.model import Lookup, LookupHealth
from slim.recorder_thread import RecorderThread


class LookupRecorder(RecorderThread):
    """Listens on the gate's socket for the filter's listener, runs lookupd on it and reads what lookupd
    reports, on its own thread.

    Use as a context manager (leaving it stops the thread and ends lookupd), and call stop() for the
    lookups once the container is gone.
    """

    def __init__(self, socket_path: Path | None, supervisor: Path, phase: str):
        """`socket_path` None: lookups are not traced (the gate finds no socket and runs the program unfiltered)."""
        super().__init__("lookups", "slimtrace-lookups", phase)
        self._supervisor_binary = supervisor
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
            check_kernel()
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
        if self._note:
            return lookups, LookupHealth(traced=False, calls=self._calls, note=self._note)
        return lookups, LookupHealth(traced=True, calls=self._calls)

    def _release(self) -> None:
        if self._container_exit is not None:
            os.close(self._container_exit)
        if self._supervisor is not None:
            self._supervisor.close()
        if self._gate is not None:
            self._gate.__exit__(None, None, None)

    def _run(self) -> None:
        poller = self._poller()
        if self._gate is not None:
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
        if self._gate is not None and self._gate.fileno() in ready:
            poller.unregister(self._gate.fileno())
            self._start_supervisor(poller)

    def _start_supervisor(self, poller: select.poll) -> None:
        try:
            listener, gate_pid = self._gate.receive_listener()
        except LookupsUnavailable as why:
            self._note = str(why)
            return
        self._supervisor = Supervisor(self._supervisor_binary, listener)
        poller.register(self._supervisor.fileno(), select.POLLIN)
        # lookupd ends with the container's first process (the gate become the program): the engine holds
        # the container as running while a process answers its seccomp listener (up to a second seen here).
        try:
            self._container_exit = namespace_init_pidfd(gate_pid)
        except ProcessLookupError:  # a program that is done already
            self._supervisor.finish()
            return
        if self._container_exit is not None:
            poller.register(self._container_exit, select.POLLIN)

    def _finish(self) -> None:
        """Once the container is gone: the supervisor's last records and its count of calls."""
        if self._supervisor is None:
            self._note = self._note or "the gate never handed over its seccomp listener"
            return
        self._supervisor.finish()
        while output := self._supervisor.read():
            self._take(output)
        if self._supervisor.close() != 0:
            raise OSError("the lookup supervisor failed")

    def _take(self, output: bytes) -> None:
        records, calls, self._unparsed = parse_records(self._unparsed + output)
        self._lookups += [self._lookup(record) for record in records]
        if records:
            self._noted()
        if calls is not None:
            self._calls = calls

    def _lookup(self, record: LookupRecord) -> Lookup:
        return Lookup(path=PurePosixPath(record.path), follow=record.follow, program=record.program, phase=self._phase)
