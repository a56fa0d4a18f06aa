"""The CI contract: every documented exit code, provoked for real (README "Exit codes").

    0 ok, 1 tool error, 2 usage, 3 image not found, 4 engine unreachable, 5 application failed,
    6 verification failed, 7 policy (gate) failed, 8 cannot trace here, 130 interrupted (after cleanup)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from slim.engine import OWNER_LABEL
from slim.errors import ExitCode
from tests.helpers import slim


def assert_exit(result: subprocess.CompletedProcess, code: int, words: str = "") -> None:
    assert result.returncode == code, f"exit {result.returncode}, expected {code}:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr
    if words:
        assert words in result.stderr


def minimal_report(**changes) -> dict:
    """The parts of a build report `slim report` reads."""
    report = {
        "schema_version": 1,
        "source": {"ref": "example/app:1", "id": "sha256:" + "1" * 64, "size": 100_000_000, "files": 5000,
                   "compressed_size": 40_000_000},
        "result": {"id": "sha256:" + "2" * 64, "tag": "example/app.slim:1", "size": 10_000_000, "files": 50,
                   "compressed_size": 4_000_000},
        "reduction_ratio": 10.0,
        "verification": {"status": "passed", "comparisons": []},
        "kept": [],
        "kept_totals": {"files": 50, "bytes": 10_000_000, "bytes_by_top_dir": {"/usr": 10_000_000}},
        "removed": {"files": 4950, "bytes": 90_000_000, "bytes_by_top_dir": {"/usr": 90_000_000},
                    "largest": [{"path": "/usr/bin/perl", "size": 3_800_000}]},
    }
    report.update(changes)
    return report


@pytest.fixture
def report_file(tmp_path) -> Path:
    path = tmp_path / "app.slim-report.json"
    path.write_text(json.dumps(minimal_report()))
    return path


# ---------------------------------------------------------------- without an engine


def test_0_ok(report_file):
    result = slim("report", str(report_file), "--max-size", "10MB")
    assert_exit(result, ExitCode.OK)
    assert "PASS  max-size" in result.stdout


def test_1_tool_error_when_the_output_cannot_be_written(report_file, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = slim("report", str(report_file), "--format", "html", "-o", str(blocker / "report.html"))
    assert_exit(result, ExitCode.TOOL_ERROR, "cannot write")


@pytest.mark.parametrize(
    "content, words",
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a slimtrace build report"),
        (json.dumps(minimal_report(schema_version=99)), "schema version 99"),
        (json.dumps({k: v for k, v in minimal_report().items() if k != "result"}), "incomplete report: no result"),
    ],
)
def test_2_usage_error_for_a_corrupted_report(tmp_path, content, words):
    broken = tmp_path / "broken.json"
    broken.write_text(content)
    assert_exit(slim("report", str(broken)), ExitCode.USAGE, words)


def test_2_usage_error_for_a_bad_size(report_file):
    assert_exit(slim("report", str(report_file), "--max-size", "ten"), ExitCode.USAGE, "is not a size")


def test_4_engine_unreachable(tmp_path):
    result = slim("xray", "x:1", env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert_exit(result, ExitCode.ENGINE_UNREACHABLE, "cannot reach the Docker engine")


def test_7_policy_failed_in_report(report_file):
    result = slim("report", str(report_file), "--fail-under-ratio", "20", "--require-verified")
    assert_exit(result, ExitCode.POLICY_FAILED, "1 gate failed")
    assert "FAIL  fail-under-ratio: measured 10x smaller, threshold >= 20x" in result.stdout
    assert "Result: FAIL [Total:3] [Passed:1] [Failed:1] [Skipped:1]" in result.stdout


# ---------------------------------------------------------------- with the engine


@pytest.mark.engine
def test_3_image_not_found():
    assert_exit(slim("xray", "slimtrace-test/does-not-exist:1"), ExitCode.IMAGE_NOT_FOUND, "not found")


@pytest.mark.engine
@pytest.mark.matrix
def test_5_application_failed(fixture_image):
    # The debootstrap base image has neither Entrypoint nor Cmd: nothing to run.
    assert_exit(slim("build", fixture_image("base")), ExitCode.APPLICATION_FAILED, "no Entrypoint or Cmd")


@pytest.fixture
def slim_tag(docker_client):
    """A tag for a slimmed image that the test removes again, whatever happened."""
    tag = f"slimtrace-test/exit-{uuid.uuid4().hex[:10]}:1"
    yield tag
    if docker_client.images.list(tag):
        docker_client.images.remove(tag, force=True)


@pytest.mark.engine
@pytest.mark.matrix
def test_6_verification_failed(fixture_image, slim_tag, tmp_path, docker_client):
    # Without a page the probes fetch, the slimmed nginx answers 404 where the original answered 200.
    result = slim("build", fixture_image("nginx"), "--tag", slim_tag, "--report", str(tmp_path / "r.json"),
                  "--exclude-path", "/var/www/html/about.html")
    assert_exit(result, ExitCode.VERIFICATION_FAILED, "does not behave like the original")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verification"]["status"] == "failed" and report["result"]["tag"] is None
    assert not docker_client.images.list(slim_tag)  # an unverified image is never tagged


@pytest.mark.engine
def test_7_policy_failed_in_build(fixture_image, slim_tag, tmp_path):
    result = slim("build", fixture_image("nginx"), "--tag", slim_tag, "--report", str(tmp_path / "r.json"),
                  "--json", "--max-size", "1KB", "--fail-under-ratio", "2", "--require-verified")
    assert_exit(result, ExitCode.POLICY_FAILED, "1 gate failed")
    data = json.loads(result.stdout)  # the report, with the gates, stays machine-readable on stdout
    assert [g["status"] for g in data["gates"]["gates"]] == ["PASS", "FAIL", "PASS"]
    assert "FAIL  max-size: measured" in result.stderr and "Result: FAIL [Total:3]" in result.stderr
    assert "gates" not in json.loads((tmp_path / "r.json").read_text())  # the report file holds facts only


@pytest.mark.engine
@pytest.mark.matrix
def test_8_cannot_trace_without_cap_sys_admin(fixture_image, slim_tag, tmp_path, docker_client):
    """Root without CAP_SYS_ADMIN still reaches the engine, but fanotify refuses: nothing is left behind."""
    before = {c.id for c in docker_client.containers.list(all=True, filters={"label": OWNER_LABEL})}
    result = subprocess.run(
        ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", sys.executable, "-m", "slim", "build",
         fixture_image("firstread"), "--tag", slim_tag, "--report", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=600,
    )
    assert_exit(result, ExitCode.CANNOT_TRACE, "fanotify needs root (CAP_SYS_ADMIN)")
    assert {c.id for c in docker_client.containers.list(all=True, filters={"label": OWNER_LABEL})} == before
    assert not docker_client.images.list(slim_tag)


@pytest.mark.engine
@pytest.mark.matrix
def test_130_interrupted_build_leaves_nothing_behind(fixture_image, slim_tag, tmp_path, docker_client):
    image = fixture_image("nginx")
    image_id = docker_client.images.get(image).id
    temp = tmp_path / "tmp"
    temp.mkdir()
    before = {c.id for c in docker_client.containers.list(all=True, filters={"label": OWNER_LABEL})}
    build = subprocess.Popen(
        [sys.executable, "-m", "slim", "build", image, "--tag", slim_tag, "--report", str(tmp_path / "r.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(temp)},
    )
    try:
        ours = _wait_for_traced_container(build, docker_client, image_id, before)
        assert list(temp.glob("slimtrace-*")), "the build's temp dir should exist while it runs"
        build.send_signal(signal.SIGINT)
        _, stderr = build.communicate(timeout=120)
    finally:
        if build.poll() is None:
            build.kill()
            build.wait()
    assert build.returncode == ExitCode.INTERRUPTED, stderr[-3000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    left = {c.id for c in docker_client.containers.list(all=True, filters={"label": OWNER_LABEL})}
    assert not (ours & left), f"containers left behind: {ours & left}"
    assert list(temp.glob("slimtrace-*")) == [], "temp dirs left behind"
    assert not docker_client.images.list(slim_tag)
    assert not (tmp_path / "r.json").exists()


def _wait_for_traced_container(build, docker_client, image_id: str, before: set[str]) -> set[str]:
    """Wait for the trace stage, then for our container to exist; its ids."""
    for line in build.stderr:
        if line.strip() == "==> trace":
            break
    else:
        pytest.fail(f"the build ended before tracing (exit {build.wait()})")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        containers = docker_client.containers.list(all=True, filters={"label": OWNER_LABEL})
        ours = {c.id for c in containers if c.id not in before and c.attrs["Image"] == image_id}
        if ours:
            return ours
        time.sleep(0.05)
    pytest.fail("no traced container appeared within 60 s")
