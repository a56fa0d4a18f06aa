"""The eBPF lookup tracer on the real kernel: programs loaded and attached, processes of this machine
traced through them (slim/adapters/bpf_lookups.py). The container side is in test_lookups.py.

Each test forks a child that waits for a word on a pipe, follows it, lets it go, and reads what was
recorded after it is done (or while it waits again, where /proc must still show it).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from slim.adapters.bpf_lookups import KEY_PATH, BpfLookups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="eBPF tracing needs root")


@pytest.fixture(scope="module")
def btf_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tracer(btf_cache):
    lookups = BpfLookups(btf_cache)
    yield lookups
    lookups.close()


def traced_child(tracer: BpfLookups, work, hold: bool = False):
    """Fork a child that runs work() once followed, then exits (or, `hold`, waits for a word first).
    Returns (pid, release) where release() lets a held child exit and reaps it."""
    go_r, go_w = os.pipe()
    end_r, end_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(go_r, 1)
        try:
            work()
            if hold:
                os.write(end_w, b"x")
                os.read(go_r, 1)
        finally:
            os._exit(0)
    tracer.follow(pid)
    os.write(go_w, b"x")

    def release() -> None:
        os.write(go_w, b"x")
        os.waitpid(pid, 0)
        for fd in (go_r, go_w, end_r, end_w):
            os.close(fd)

    if hold:
        os.read(end_r, 1)
    else:
        release()
    return pid, release


def recorded(tracer: BpfLookups) -> dict[tuple[str, bool], str]:
    """(path, follow) -> program, after what was sent has arrived."""
    time.sleep(0.05)  # the ring is written during the call itself: this is only for the reader's wake-up
    found = {}
    for record in tracer.read():
        assert (record.path, record.follow) not in found, "reported twice"
        found[(record.path, record.follow)] = record.program
    return found


def test_a_traced_process_its_children_and_threads_have_each_path_reported_once(tracer, tmp_path):
    marker = tmp_path / "marker"

    def work():
        for _ in range(5):
            marker.exists()
        thread = threading.Thread(target=lambda: [os.path.exists(tmp_path / "from-thread") for _ in range(3)])
        thread.start()
        thread.join()
        child = os.fork()
        if child == 0:
            marker.exists()
            os.path.exists(tmp_path / "from-child")
            os._exit(0)
        os.waitpid(child, 0)

    traced_child(tracer, work)
    found = recorded(tracer)
    assert {(str(marker), True), (str(tmp_path / "from-thread"), True), (str(tmp_path / "from-child"), True)} <= set(found)
    calls, lost = tracer.calls()
    assert calls >= 10 and lost == 0


def test_a_process_nobody_followed_is_not_seen(tracer, tmp_path):
    other = os.fork()
    if other == 0:
        os.path.exists(tmp_path / "untraced")
        os._exit(0)
    os.waitpid(other, 0)
    traced_child(tracer, lambda: os.path.exists(tmp_path / "traced"))
    assert set(recorded(tracer)) == {(str(tmp_path / "traced"), True)}


def test_o_path_opens_are_lookups_and_reading_opens_and_fstat_are_not(tracer, tmp_path):
    (tmp_path / "read").write_text("x")
    (tmp_path / "path-only").write_text("x")

    def work():
        fd = os.open(tmp_path / "read", os.O_RDONLY)
        os.fstat(fd)
        os.close(fd)
        os.close(os.open(tmp_path / "path-only", os.O_PATH))

    traced_child(tracer, work)
    assert set(recorded(tracer)) == {(str(tmp_path / "path-only"), True)}


def test_calls_that_look_at_a_symlink_itself_are_told_apart(tracer, tmp_path):
    link = tmp_path / "link"
    link.symlink_to("/etc")

    def work():
        os.path.lexists(tmp_path / "lstat")
        os.path.exists(tmp_path / "stat")
        os.readlink(link)
        os.access(tmp_path / "access-nofollow", os.F_OK, follow_symlinks=False)
        os.access(tmp_path / "access", os.R_OK)

    traced_child(tracer, work)
    found = set(recorded(tracer))
    assert {(str(tmp_path / "lstat"), False), (str(tmp_path / "stat"), True), (str(link), False),
            (str(tmp_path / "access-nofollow"), False), (str(tmp_path / "access"), True)} <= found


def test_relative_paths_are_made_absolute_against_the_callers_directory(tracer, tmp_path):
    (tmp_path / "sub").mkdir()

    def work():
        os.chdir(tmp_path)
        os.path.exists("relative")
        directory = os.open(tmp_path / "sub", os.O_RDONLY | os.O_DIRECTORY)
        os.access("in-sub", os.F_OK, dir_fd=directory)

    _, release = traced_child(tracer, work, hold=True)
    try:
        found = set(recorded(tracer))
    finally:
        release()
    assert {(str(tmp_path), True), (str(tmp_path / "relative"), True), (str(tmp_path / "sub" / "in-sub"), True)} <= found


def test_a_path_longer_than_the_kernels_key_is_recorded_whole_and_once(tracer, tmp_path):
    long_path = str(tmp_path / ("d" * 200) / ("f" * 200))
    assert len(long_path) > KEY_PATH

    traced_child(tracer, lambda: [os.path.exists(long_path) for _ in range(3)])
    assert (long_path, True) in recorded(tracer)


def test_lookups_are_named_by_the_program_the_process_ran_even_once_it_is_gone(tracer, tmp_path):
    traced_child(tracer, lambda: os.execv("/bin/sh", ["sh", "-c", f"readlink {tmp_path}/gone-link; true"]))
    found = recorded(tracer)
    assert found[(f"{tmp_path}/gone-link", False)] == "/usr/bin/readlink"


def test_a_thread_that_execs_keeps_the_process_traced(tracer, tmp_path):
    """Execed from a thread other than the leader, the process goes on under the leader's id."""
    def work():
        thread = threading.Thread(target=os.execv, args=("/bin/sh", ["sh", "-c", f"[ -e {tmp_path}/after-exec ]"]))
        thread.start()
        thread.join()

    traced_child(tracer, work)
    assert (f"{tmp_path}/after-exec", True) in recorded(tracer)


def test_closing_detaches_everything(btf_cache):
    before = set(os.listdir("/proc/self/fd"))
    BpfLookups(btf_cache).close()
    assert set(os.listdir("/proc/self/fd")) == before


def test_a_scripts_lookups_are_named_by_its_interpreter_as_proc_would_name_it(tracer, tmp_path):
    script = tmp_path / "check"
    script.write_text(f"#!/bin/sh\n[ -e {tmp_path}/by-script ]\n")
    script.chmod(0o755)
    traced_child(tracer, lambda: os.execv(str(script), [str(script)]))
    found = recorded(tracer)
    assert found[(f"{tmp_path}/by-script", True)] == os.path.realpath("/bin/sh")  # /usr/bin/dash, once gone
