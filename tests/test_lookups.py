"""Issue 10, "existence checks traced": paths that processes stat, access or readlink without opening them.

The real kernel and engine throughout, except for the pure parts (lookupd's record format, the kernel
version check, the closure over a hand-built image): both ways of tracing lookups (the eBPF programs, and
the gate's seccomp filter with the C supervisor), and a fixture whose start script and licence checker
refuse to run without files they never open.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import jsonschema
import pytest


from slim.adapters.docker_engine import DockerEngine
from slim.adapters.bpf import BpfUnavailable
from slim.adapters.seccomp import LookupRecord, LookupsUnavailable, check_kernel, parse_records
from slim.build.closure import compute_closure
from slim.engine import ContainerSpec
from slim.model import Lookup, LookupHealth, ReasonKind, RunOutcome
from slim.adapters.fanotify_tracer import FanotifyTracer
from slim.build.lookups import EBPF, SECCOMP
from slim.build.tracing import run_traced
from tests.helpers import NO_ALWAYS, Layer, facts_with, trace_of

P = PurePosixPath
SCHEMA = Path(__file__).parent.parent / "slim" / "schema" / "report.schema.json"
APP = "/usr/lib/lookupapp"


# ---------------------------------------------------------------- pure parts


def test_lookupd_records_are_split_and_an_unfinished_one_waits_for_the_next_read():
    first = b"1\0/usr/bin/dash\0/etc/hostname\0" b"0\0/usr/bin/ls\0/usr/sh"
    records, calls, rest = parse_records(first)
    assert records == [LookupRecord("/etc/hostname", True, "/usr/bin/dash")] and calls is None
    records, calls, rest = parse_records(rest + b"are\0calls\0" b"42\0\0")
    assert records == [LookupRecord("/usr/share", False, "/usr/bin/ls")] and calls == 42 and rest == b""


@pytest.mark.parametrize("release", ["5.4.0-150-generic", "4.19.0"])
def test_a_kernel_without_continue_answers_is_refused(release):
    with pytest.raises(LookupsUnavailable, match="5.5 or later"):
        check_kernel(release)


@pytest.mark.parametrize("release", ["5.5.0", "6.18.44-fc-v657", "5.15.0-91-generic"])
def test_a_kernel_with_continue_answers_is_accepted(release):
    check_kernel(release)


def image_with_checked_files(tmp_path: Path):
    layer = Layer()
    layer.directory("/srv/app/releases/2")
    layer.file("/srv/app/schema.sql", b"CREATE TABLE t (id int);\n", mode=0o644)
    layer.file("/srv/app/releases/2/VERSION", b"2\n", mode=0o644)
    layer.symlink("/srv/app/current", "releases/2")
    layer.file("/srv/app/unrelated.bin", b"x" * 100, mode=0o644)
    return layer.rootfs(tmp_path)


def lookup(path: str, follow: bool = True) -> Lookup:
    return Lookup(P(path), follow, program="/usr/bin/dash", phase="startup")


def test_looked_up_paths_in_the_image_are_kept_and_missing_ones_are_not(tmp_path):
    rootfs = image_with_checked_files(tmp_path)
    trace = dataclasses.replace(
        trace_of(), lookups=(lookup("/srv/app/schema.sql"), lookup("/srv/app/missing.conf"))
    )
    closure = compute_closure(trace, rootfs, facts_with(), NO_ALWAYS)
    assert [r.kind for r in closure.kept[P("/srv/app/schema.sql")]] == [ReasonKind.LOOKED_UP]
    assert closure.kept[P("/srv/app/schema.sql")][0].describe() == "looked up by /usr/bin/dash during startup"
    assert P("/srv/app/missing.conf") not in closure.kept
    assert P("/srv/app/unrelated.bin") not in closure.kept


def test_a_symlink_looked_at_itself_keeps_where_it_leads_and_nothing_below(tmp_path):
    rootfs = image_with_checked_files(tmp_path)
    trace = dataclasses.replace(trace_of(), lookups=(lookup("/srv/app/current", follow=False),))
    closure = compute_closure(trace, rootfs, facts_with(), NO_ALWAYS)
    assert closure.kept[P("/srv/app/current")][0].kind is ReasonKind.LOOKED_UP
    assert P("/srv/app/releases/2") in closure.kept  # readlink's answer must lead somewhere in the slim image
    assert P("/srv/app/releases/2/VERSION") not in closure.kept


# ---------------------------------------------------------------- the tracer (real kernel, real engine)


@pytest.fixture(params=[EBPF, SECCOMP])
def mechanism(request) -> str:
    return request.param


def traced_lookups(fixture_image, script: str, mechanisms: str | tuple[str, ...] = EBPF, user: str | None = None,
                   lookups: bool = True):
    engine = DockerEngine()
    spec = ContainerSpec(image=fixture_image("base"), entrypoint=("sh",), command=("-c", script), user=user)

    def exercise(container_id, set_phase, _last_news):
        return RunOutcome(mode="batch", exit_code=engine.wait(container_id, 60), running_after_probes=False, probes=())

    trace = run_traced(engine, FanotifyTracer(), spec, exercise, lookups=lookups,
                       lookup_mechanisms=(mechanisms,) if isinstance(mechanisms, str) else mechanisms)
    assert trace.run.exit_code == 0
    return trace, {(str(found.path), found.follow): found for found in trace.lookups}


@pytest.mark.engine
def test_stat_access_readlink_and_cd_are_recorded_with_relative_paths_made_absolute(fixture_image, mechanism):
    trace, found = traced_lookups(
        fixture_image,
        "[ -f /etc/hostname ]; [ -e /no/such/file ] || true; cd /usr/share; [ -d doc ]; readlink /bin >/dev/null",
        mechanism,
    )
    assert trace.lookup_health == LookupHealth(traced=True, calls=trace.lookup_health.calls, mechanism=mechanism)
    assert trace.lookup_health.calls >= len(found) > 0
    assert {("/etc/hostname", True), ("/no/such/file", True), ("/usr/share", True), ("/usr/share/doc", True),
            ("/bin", False)} <= set(found)
    assert found[("/etc/hostname", True)].program == "/usr/bin/dash"
    assert found[("/bin", False)].program == "/usr/bin/readlink"
    # The gate's own files are looked up before the filter exists: they never appear.
    assert not any(path.startswith("/.slimtrace") for path, _ in found)


@pytest.mark.engine
def test_lookups_are_traced_when_the_container_runs_as_an_unprivileged_user(fixture_image, mechanism):
    trace, found = traced_lookups(fixture_image, "[ -f /etc/hostname ]", mechanism, user="nobody")
    assert trace.lookup_health.traced and ("/etc/hostname", True) in found


@pytest.mark.engine
def test_where_ebpf_is_refused_the_seccomp_filter_traces_and_the_note_says_why(fixture_image, monkeypatch):
    def refused(_cache):
        raise BpfUnavailable("bpf: Operation not permitted")

    # The refusal is faked (this host allows eBPF); the fallback it leads to runs for real.
    monkeypatch.setattr("slim.build.lookups.BpfLookups", refused)
    trace, found = traced_lookups(fixture_image, "[ -f /etc/hostname ]", (EBPF, SECCOMP))
    assert ("/etc/hostname", True) in found
    assert trace.lookup_health == LookupHealth(
        traced=True, calls=trace.lookup_health.calls, note="ebpf: bpf: Operation not permitted", mechanism=SECCOMP,
    )


@pytest.mark.engine
def test_no_lookups_leaves_the_filter_out(fixture_image):
    trace, found = traced_lookups(fixture_image, "[ -f /etc/hostname ]", lookups=False)
    assert found == {}
    assert trace.lookup_health == LookupHealth(traced=False, calls=0, note="turned off (--no-lookups)")


def supervisors_running() -> list[int]:
    """Pids of lookupd processes this test process started (lookupd-<digest> in the cache)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            stat = (entry / "stat").read_text()
            name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if name.startswith("lookupd-") and int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.append(int(entry.name))
    return found


@pytest.mark.engine
def test_the_supervisor_ends_with_the_containers_first_process(fixture_image):
    """The engine holds a container as running while a process answers its seccomp listener: lookupd must
    end when the container's first process exits, not when the trace is stopped after the engine's wait."""
    engine = DockerEngine()
    spec = ContainerSpec(image=fixture_image("base"), entrypoint=("sh",), command=("-c", "[ -f /etc/hostname ]"))
    left_running: list[list[int]] = []

    def exercise(container_id, set_phase, _last_news):
        exit_code = engine.wait(container_id, 60)
        deadline = time.monotonic() + 10
        while supervisors_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        left_running.append(supervisors_running())
        return RunOutcome(mode="batch", exit_code=exit_code, running_after_probes=False, probes=())

    trace = run_traced(engine, FanotifyTracer(), spec, exercise, lookup_mechanisms=(SECCOMP,))
    assert left_running == [[]]
    # Ended, it still handed over every path and its count of calls.
    assert trace.lookup_health.traced and trace.lookup_health.calls >= 1
    assert "/etc/hostname" in {str(lookup.path) for lookup in trace.lookups}


@pytest.mark.engine
def test_repeated_lookups_are_reported_once(fixture_image, mechanism):
    trace, found = traced_lookups(
        fixture_image, "for i in 1 2 3 4 5 6 7 8 9 10; do [ -f /etc/hostname ]; done", mechanism
    )
    assert [key for key in found if key[0] == "/etc/hostname"] == [("/etc/hostname", True)]
    assert trace.lookup_health.calls >= 10


# ---------------------------------------------------------------- acceptance: the lookupapp fixture


def explain(report_path: Path, path: str) -> str:
    done = subprocess.run([sys.executable, "-m", "slim", "explain", str(report_path), path],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.engine
def test_a_start_script_and_a_program_that_only_check_for_files_still_start_when_slimmed(built, docker_client,
                                                                                        tmp_path):
    report, tag = built("lookupapp")
    assert report["verification"]["status"] == "passed"
    output = docker_client.containers.run(tag, remove=True).decode()
    assert output.splitlines() == [
        "lookupapp: no override, using defaults",
        "lookup-check: licence found, plugin enabled, release releases/2.1",
        "lookupapp: ready, schema /usr/share/lookupapp/schema.sql",
    ]
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(report)
    kept = {item["path"]: item for item in report["kept"]}
    checked = ("/usr/share/lookupapp/schema.sql", f"{APP}/licence.key", f"{APP}/plugins/enabled", f"{APP}/current")
    for path in checked:
        # Looked up is the only reason (current also leads to the release it names): without the lookup
        # tracer nothing would keep these files.
        assert {reason["kind"] for reason in kept[path]["reasons"]} - {"symlink"} == {"looked-up"}, path
    assert kept[f"{APP}/licence.key"]["reasons"][0]["source"] == "/usr/local/bin/lookup-check"
    assert f"{APP}/releases/2.1" in kept and f"{APP}/releases/2.1/VERSION" not in kept
    lookups = report["lookups"]
    assert lookups["traced"] and lookups["in_image"] >= len(checked)
    assert ["/etc/lookupapp/override.conf", "/usr/bin/dash", "startup"] in lookups["missing"]

    report_path = tmp_path / "lookupapp.json"
    report_path.write_text(json.dumps(report))
    schema_why = explain(report_path, "/usr/share/lookupapp/schema.sql")
    assert "kept" in schema_why and "looked up (checked for, not opened) by /usr/bin/dash during startup" in schema_why
    missing_why = explain(report_path, "/etc/lookupapp/override.conf")
    assert "not in the image" in missing_why and "looked up" in missing_why and "nothing to keep" in missing_why

