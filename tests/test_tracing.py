"""Tracing: the gate build, the Recorder on a tmpfs, and run_traced against real fixture containers."""
import os
import select
import signal
import subprocess
import time
from pathlib import Path, PurePosixPath

import pytest

# The tmpfs fixture (a private filesystem to mark) is shared with the binding's own tests.

from slim.adapters.docker_engine import DockerEngine
from slim.adapters.fanotify import Fanotify
from slim.adapters.fanotify_tracer import TRACE_MASK, FanotifyTracer, Recorder
from slim.engine import ContainerSpec
from slim.errors import TracingUnavailable
from slim.adapters.c_helpers import gate_binary
from slim.adapters.processes import catches_signal, namespace_init_pidfd
from slim.model import Access, RunOutcome, Seen, Trace
from tests.helpers import fanotify_queue_limit
from probes import ExecProbe
from slim.build.exercise import AFTER_PROBES, ExercisePlan, exercise
from slim.build.tracing import (
    GATE_MOUNT, SHUTDOWN, STARTUP, WatchedProcess, run_traced, signal_number,
)

LOADER = PurePosixPath("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
LIBC = PurePosixPath("/usr/lib/x86_64-linux-gnu/libc.so.6")


# ---------------------------------------------------------------- the gate build


def test_gate_is_built_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    binary = gate_binary()
    assert binary.parent == tmp_path / "slimtrace" and binary.name.startswith("gate-")
    assert os.access(binary, os.X_OK)
    built_at = binary.stat().st_mtime_ns
    assert gate_binary() == binary and binary.stat().st_mtime_ns == built_at
    assert [path.name for path in binary.parent.iterdir()] == [binary.name]  # no temp file left


def test_gate_without_a_compiler_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TracingUnavailable, match="install gcc and libc6-dev"):
        gate_binary()


# ---------------------------------------------------------------- Recorder (root, no engine)


def sh(directory: Path, script: str) -> None:
    subprocess.run(["sh", "-c", script], cwd=directory, check=True, stdout=subprocess.DEVNULL)


def record(directory: Path, script: str, bounded_queue: bool = False):
    with Fanotify(bounded_queue=bounded_queue) as notifier, Recorder(notifier, STARTUP) as recorder:
        notifier.mark_filesystem(directory, TRACE_MASK)
        sh(directory, script)
        paths, health = recorder.stop()
    return {traced.path: traced for traced in paths}, health


@pytest.mark.engine
@pytest.mark.matrix
def test_recorder_folds_events_into_paths(tmpfs):  # noqa: F811
    # The pause gives the recorder time to place its ignore marks before the repeats.
    paths, health = record(tmpfs, "cat data.txt; ./prog; ls dir; sleep 0.3; cat prog; ./prog; cat data.txt")
    assert {path: traced.accesses for path, traced in paths.items()} == {
        PurePosixPath(tmpfs / "data.txt"): {Access.OPEN},
        PurePosixPath(tmpfs / "prog"): {Access.OPEN, Access.EXEC},
        PurePosixPath(tmpfs / "dir"): {Access.LIST},
    }
    assert all(traced.phase == STARTUP for traced in paths.values())
    # The ignore marks kept the repeated opens from reaching us at all.
    assert health.events == 3 and health.complete and health.foreign_events == 0


@pytest.mark.engine
@pytest.mark.matrix
def test_recorder_names_the_program_and_phase_of_the_first_sight(tmpfs):  # noqa: F811
    with Fanotify() as notifier, Recorder(notifier, STARTUP) as recorder:
        notifier.mark_filesystem(tmpfs, TRACE_MASK)
        # The shell opens data.txt itself and stays alive long enough for /proc/<pid>/exe to be read.
        sh(tmpfs, "exec 3<data.txt; sleep 0.5")
        recorder.set_phase("probe one")
        sh(tmpfs, "cat unread.txt; cat data.txt")
        paths = {traced.path.name: traced for traced in recorder.stop()[0]}
    assert paths["data.txt"].program == os.path.realpath("/bin/sh")
    assert paths["data.txt"].phase == STARTUP
    assert paths["unread.txt"].phase == "probe one"


@pytest.mark.engine
@pytest.mark.matrix
def test_recorder_drops_our_own_opens_as_foreign(tmpfs):  # noqa: F811
    with Fanotify() as notifier, Recorder(notifier, STARTUP) as recorder:
        notifier.mark_filesystem(tmpfs, TRACE_MASK)
        (tmpfs / "data.txt").read_text()
        paths, health = recorder.stop()
    assert paths == () and health.foreign_events == 1


@pytest.mark.engine
@pytest.mark.matrix
def test_recorder_stop_drains_what_is_queued(tmpfs):  # noqa: F811
    paths, _ = record(tmpfs, "for n in $(seq 200); do : > f$n; done")
    assert len(paths) == 200


@pytest.mark.engine
@pytest.mark.matrix
def test_recorder_reports_overflow(tmpfs):  # noqa: F811
    with Fanotify(bounded_queue=True) as notifier:
        notifier.mark_filesystem(tmpfs, TRACE_MASK)
        # Fill the kernel's queue before anyone reads it.
        sh(tmpfs, f"for n in $(seq {fanotify_queue_limit() + 10}); do : > f$n; done")
        with Recorder(notifier, STARTUP) as recorder:
            paths, health = recorder.stop()
    assert health.overflow and not health.complete
    assert len(paths) == fanotify_queue_limit()


# ---------------------------------------------------------------- run_traced (engine)


@pytest.fixture(scope="module")
def engine(docker_client):
    return DockerEngine(docker_client)


def run_to_exit(engine):
    """An exercise for batch images: no probes, just wait for the container to finish."""

    def exercise(container_id, set_phase, _last_news):
        code = engine.wait(container_id, timeout=60)
        return RunOutcome(
            mode="batch",
            exit_code=code,
            running_after_probes=code is None,
            probes=(),
            output_tail=engine.logs(container_id),
        )

    return exercise


def trace_image(engine, tag, argv=None, exercise=None, **options) -> Trace:
    facts = engine.inspect_image(tag)
    spec = ContainerSpec(image=tag, entrypoint=facts.entrypoint, command=facts.cmd)
    if argv is not None:
        spec = ContainerSpec(image=tag, entrypoint=(argv[0],), command=argv[1:])
    return run_traced(engine, FanotifyTracer(), spec, exercise or run_to_exit(engine), **options)


def by_path(trace: Trace):
    return {str(traced.path): traced for traced in trace.paths}


@pytest.mark.engine
@pytest.mark.matrix
def test_trace_sees_the_very_first_open(engine, fixture_image):
    trace = trace_image(engine, fixture_image("firstread"))
    paths = by_path(trace)
    assert trace.run.exit_code == 0, trace.run.output_tail
    assert paths["/data/first.txt"].accesses == {Access.OPEN}
    assert Access.EXEC in paths["/firstread"].accesses
    assert "/data/unread.txt" not in paths
    assert not any(path.startswith(GATE_MOUNT) for path in paths)
    assert trace.health.complete and trace.health.foreign_events == 0


@pytest.mark.engine
@pytest.mark.matrix
def test_trace_of_a_dynamic_binary_has_its_loader_and_libraries(engine, fixture_image):
    trace = trace_image(engine, fixture_image("jq"))
    paths = by_path(trace)
    assert trace.run.exit_code == 0 and trace.run.output_tail.strip() == "4"
    assert {Access.OPEN, Access.EXEC} <= paths["/usr/bin/jq"].accesses
    # Resolved, as the container sees them: not /lib64/ld-linux-x86-64.so.2 (a symlink) nor a host path.
    assert Access.EXEC in paths[str(LOADER)].accesses  # the kernel loads PT_INTERP like an executable
    assert paths[str(LIBC)].accesses == {Access.OPEN}
    assert paths[str(LIBC)].program == "/usr/bin/jq"
    assert "/data/input.json" in paths


@pytest.mark.engine
@pytest.mark.matrix
def test_gate_reports_a_command_it_cannot_run(engine, fixture_image):
    trace = trace_image(engine, fixture_image("jq"), argv=("no-such-program",))
    assert trace.run.exit_code == 127
    assert "slimtrace gate: exec no-such-program: No such file or directory" in trace.run.output_tail


@pytest.mark.engine
@pytest.mark.matrix
def test_trace_sees_only_the_traced_container(engine, fixture_image, tmp_path):
    tag = fixture_image("jq")
    host_file = tmp_path / "host-only-secret.txt"
    host_file.write_text("the host's\n")
    bystander_output = []

    def exercise(container_id, set_phase, _last_news):
        set_phase("bystanders")
        bystander_output.append(run_bystander(engine, tag, ("cat", "/etc/debian_version")))
        subprocess.run(["cat", str(host_file)], check=True, stdout=subprocess.DEVNULL)
        time.sleep(0.2)  # let the recorder catch up before the container is stopped
        return RunOutcome(mode="server", exit_code=None, running_after_probes=engine.is_running(container_id), probes=())

    # A shell that exits on SIGTERM (as PID 1 it would ignore it otherwise), so stopping is quick.
    trace = trace_image(engine, tag, argv=("sh", "-c", "trap 'exit 0' TERM; sleep 60 & wait"), exercise=exercise)
    paths = by_path(trace)
    assert trace.run.running_after_probes
    assert bystander_output[0].strip()  # the bystander really did read the file
    assert "/usr/bin/dash" in paths  # and the traced shell itself was seen
    assert "/etc/debian_version" not in paths
    assert not any(traced.path.name == host_file.name for traced in trace.paths)


# Read after the exec probe has returned, one file every 0.12 s: later than QUIET after the probes ends,
# but never QUIET without something new.
LATE_READS = "for f in /etc/issue /etc/host.conf /etc/login.defs /etc/xattr.conf; do sleep 0.12; cat $f; done"


@pytest.mark.engine
def test_files_a_busy_server_reads_after_the_probes_are_traced(engine, fixture_image):
    probe = ExecProbe(("sh", "-c", f"({LATE_READS}) >/dev/null 2>&1 &"))
    plan = ExercisePlan((probe,), "server", timeout=60)
    when_probed: list[Seen] = []
    trace = trace_image(
        engine, fixture_image("jq"), argv=("sh", "-c", "trap 'exit 0' TERM; sleep 60 & wait"),
        exercise=lambda cid, mark, news: exercise(engine, cid, plan, mark, news), on_probed=when_probed.append,
    )
    paths = by_path(trace)
    assert trace.run.probes[0].ok, trace.run.probes[0].detail
    assert paths["/etc/issue"].phase == AFTER_PROBES
    assert paths["/etc/xattr.conf"].phase == AFTER_PROBES
    # What the trace had seen when the probes ended: part of the whole trace, without what came after.
    [seen] = when_probed
    assert seen.paths and {traced.path for traced in seen.paths} <= {traced.path for traced in trace.paths}
    assert not {"/etc/issue", "/etc/xattr.conf"} & {str(traced.path) for traced in seen.paths}


def run_bystander(engine, tag, argv) -> str:
    """Run an untraced container of `tag` to completion and return its output."""
    container_id = engine.create_container(ContainerSpec(image=tag, entrypoint=argv[:1], command=argv[1:]))
    try:
        engine.start(container_id)
        assert engine.wait(container_id, timeout=60) == 0
        return engine.stdout(container_id).decode()
    finally:
        engine.remove_container(container_id)


@pytest.mark.engine
@pytest.mark.matrix
def test_container_and_gate_dir_are_removed_when_the_exercise_fails(engine, fixture_image, docker_client):
    left = []

    def exercise(container_id, set_phase, _last_news):
        mounts = docker_client.api.inspect_container(container_id)["Mounts"]
        gate_dir = next(mount["Source"] for mount in mounts if mount["Destination"] == GATE_MOUNT)
        left.append((container_id, Path(gate_dir)))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trace_image(engine, fixture_image("jq"), argv=("sleep", "60"), exercise=exercise)
    container_id, gate_dir = left[0]
    assert docker_client.containers.list(all=True, filters={"id": container_id}) == []
    assert not gate_dir.exists()


# ---------------------------------------------------------------- stopping after the probes


def test_signal_numbers_as_images_spell_them():
    assert signal_number("SIGQUIT") == signal_number("QUIT") == signal_number("quit") == 3
    assert signal_number("15") == 15
    assert signal_number("SIGNOPE") is None


def test_catches_signal_reads_the_handlers_of_a_real_process():
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); print(1, flush=True); time.sleep(60)"
    catching = subprocess.Popen(["python3", "-c", code], stdout=subprocess.PIPE)
    plain = subprocess.Popen(["sleep", "60"])
    try:
        catching.stdout.readline()  # the handler is installed once it printed
        assert catches_signal(catching.pid, 15)
        assert not catches_signal(catching.pid, 3)
        assert not catches_signal(plain.pid, 15)
    finally:
        for process in (catching, plain):
            process.kill()
            process.wait()


def test_only_the_first_process_of_a_pid_namespace_gets_a_pidfd_that_tells_its_exit():
    first = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while not (inits := child_pids(first.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        [init] = inits  # `sleep`, pid 1 of the new namespace
        descriptor = namespace_init_pidfd(init)
        assert descriptor is not None
        try:
            assert select.select([descriptor], [], [], 0)[0] == []
            os.kill(init, signal.SIGKILL)
            assert select.select([descriptor], [], [], 10)[0] == [descriptor]  # ready once it has exited
        finally:
            os.close(descriptor)
    finally:
        first.kill()
        first.wait()
    assert namespace_init_pidfd(os.getpid()) is None  # the host's processes are in the first namespace
    with pytest.raises(ProcessLookupError):
        namespace_init_pidfd(first.pid)


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []


@pytest.fixture
def signals_sent(monkeypatch):
    """The signals the trace sends to the container's first process, in order."""
    sent = []
    send = WatchedProcess.signal

    def recorded(process, number):
        sent.append(signal.Signals(number).name)
        send(process, number)

    monkeypatch.setattr(WatchedProcess, "signal", recorded)
    return sent


def _keep_running(engine, until_output: str = ""):
    """An exercise that leaves the container running, once its output shows `until_output`."""

    def exercise(container_id, set_phase, _last_news):
        while until_output not in engine.logs(container_id):
            time.sleep(0.05)
        return RunOutcome(mode="server", exit_code=None, running_after_probes=engine.is_running(container_id), probes=())

    return exercise


@pytest.mark.engine
@pytest.mark.matrix
def test_a_pid_1_that_handles_the_stop_signal_shuts_down_traced(engine, fixture_image, signals_sent):
    # The trap reads a file only while shutting down: it must be in the trace, in the shutdown phase.
    argv = ("sh", "-c", "trap 'cat /etc/debian_version > /dev/null; exit 0' TERM; echo trapped; sleep 60 & wait")
    trace = trace_image(engine, fixture_image("jq"), argv=argv, exercise=_keep_running(engine, "trapped"))
    assert signals_sent == ["SIGTERM"]  # it exited of its own accord: no SIGKILL came
    assert by_path(trace)["/etc/debian_version"].phase == SHUTDOWN


@pytest.mark.engine
@pytest.mark.matrix
def test_a_pid_1_that_cannot_receive_the_stop_signal_is_not_waited_for(engine, fixture_image, signals_sent):
    # A shell with no trap, as PID 1, never receives SIGTERM: only a SIGKILL ends it, sent at once.
    trace = trace_image(engine, fixture_image("jq"), argv=("sh", "-c", "sleep 60"), exercise=_keep_running(engine))
    assert signals_sent == ["SIGKILL"]  # no stop signal, so no STOP_TIMEOUT waited out after one
    assert trace.run.running_after_probes
