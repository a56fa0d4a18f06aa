"""Issue 3 acceptance: probes that exercise any application, and proof that the slimmed image behaves the same.

Real engine, real tracer, the CLI run as a user runs it (`python -m slim ...`). Every test uses tags of its
own and removes every image it made, whatever happens.
"""
from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from tests.helpers import Running, comparisons, slim

pytestmark = pytest.mark.engine

SET_GET = """
import os, socket
address = (os.environ["SLIM_TARGET_HOST"], int(os.environ["SLIM_TARGET_PORT_6379"]))
with socket.create_connection(address, timeout=5) as redis:
    redis.sendall(b"SET probe-key probe-value\\r\\n")
    assert redis.recv(64) == b"+OK\\r\\n"
    redis.sendall(b"GET probe-key\\r\\n")
    print(redis.recv(64).decode().split()[-1])
"""

ITEMS_PROBES = """
http:
  - path: /items
    expect_status: 200
"""


def build(image: str, tag: str, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / f"{uuid.uuid4().hex[:8]}.json"
    result = slim("build", image, "--tag", tag, "--report", str(report), *args, cwd=tmp_path)
    return result, json.loads(report.read_text()) if report.exists() else {}


def redis_command(port: int, command: bytes, attempts: int = 100) -> bytes:
    for _ in range(attempts):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as redis:
                redis.sendall(command + b"\r\n")
                answer = redis.recv(256)
                if answer:
                    return answer
        except OSError:  # docker-proxy hangs up while redis does not listen yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"redis never answered {command!r}")


def fetch_all(client, image: str, port: int, paths) -> dict[str, tuple[int, str]]:
    with Running(client, image, port) as app:
        return {path: fetch(app.url(path)) for path in paths}


def fetch(url: str, attempts: int = 100) -> tuple[int, str]:
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, hashlib.sha256(response.read()).hexdigest()
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


# ---------------------------------------------------------------- redis: exec and host probes, not HTTP


def test_redis_with_exec_and_host_probes_verifies_and_answers(images, fixture_image, docker_client, tmp_path):
    script = tmp_path / "set_get.py"
    script.write_text(SET_GET)
    tag = images.tag("redis")
    result, report = build(
        fixture_image("redis"), tag, tmp_path, "--exec", "redis-cli ping", "--host-exec", f"python3 {script}"
    )
    assert result.returncode == 0, result.stderr
    assert report["verification"]["status"] == "passed"
    compared = comparisons(report)
    # The exposed port answers in another protocol: not a failure of the default probe, and verified too.
    assert compared["http :6379"]["original"] == compared["http :6379"]["slimmed"] == "listening, not HTTP"
    assert compared["exec redis-cli ping"]["slimmed"] == "exit 0: PONG"
    assert compared[f"host python3 {script}"]["slimmed"] == "exit 0: probe-value"
    assert all(comparison["same"] for comparison in compared.values())

    with Running(docker_client, tag, 6379) as redis:
        port = redis.host_port
        assert redis_command(port, b"PING") == b"+PONG\r\n"
        assert redis_command(port, b"SET fresh yes") == b"+OK\r\n"
        assert redis_command(port, b"GET fresh") == b"$3\r\nyes\r\n"
    assert report["result"]["size"] * 3 < report["source"]["size"]


# ---------------------------------------------------------------- nodeapp: pages reachable only by links


def test_nodeapp_crawl_reaches_linked_pages_and_the_slimmed_image_serves_them_identically(
    images, fixture_image, docker_client, tmp_path
):
    tag = images.tag("nodeapp")
    result, report = build(fixture_image("nodeapp"), tag, tmp_path)
    assert result.returncode == 0, result.stderr
    http = comparisons(report)["http :3000"]
    assert http["same"] and report["verification"]["status"] == "passed"
    assert {"GET /", "GET /a.html", "GET /deep/b.html"} <= set(http["checked"])
    pages = ("/", "/a.html", "/deep/b.html")
    slimmed = fetch_all(docker_client, tag, 3000, pages)
    assert slimmed == fetch_all(docker_client, fixture_image("nodeapp"), 3000, pages)
    assert all(status == 200 for status, _ in slimmed.values())


# ---------------------------------------------------------------- pyapp: a lazily imported module


def test_pyapp_probe_file_route_keeps_the_lazy_module(images, fixture_image, tmp_path):
    probes = tmp_path / "probes.yaml"
    probes.write_text(ITEMS_PROBES)
    tag = images.tag("pyapp")
    result, report = build(fixture_image("pyapp"), tag, tmp_path, "--probe-file", str(probes))
    assert result.returncode == 0, result.stderr
    kept = {item["path"] for item in report["kept"]}
    assert "/app/lazy_items.py" in kept
    assert report["verification"]["status"] == "passed"
    assert "GET /items" in comparisons(report)["http :8000"]["checked"]


def test_pyapp_verification_fails_when_a_needed_file_is_excluded(images, fixture_image, tmp_path):
    probes = tmp_path / "probes.yaml"
    probes.write_text(ITEMS_PROBES)
    tag = images.tag("pyapp-broken")
    result, report = build(
        fixture_image("pyapp"), tag, tmp_path, "--probe-file", str(probes), "--exclude-path", "/app/lazy_items.py"
    )
    assert result.returncode == 6, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: the slimmed image does not behave like the original (http :8000: ")
    assert "GET /items: status 500, the original 200" in error
    assert "likely missing: /app/lazy_items.py" in error
    assert report["verification"]["status"] == "failed"
    assert report["verification"]["missing_in_slimmed"] == ["/app/lazy_items.py"]
    assert report["result"]["tag"] is None
    images.ids.append(report["result"]["id"])  # removed at the end should the assertions below fail
    assert not images.exists(tag)
    assert not images.exists(report["result"]["id"])  # no leftover untagged image either


def test_keep_unverified_tags_the_image_but_still_exits_6(images, fixture_image, tmp_path):
    tag = images.tag("pyapp-kept")
    result, report = build(
        fixture_image("pyapp"), tag, tmp_path, "--exclude-path", "/app/lazy_items.py", "--keep-unverified"
    )
    assert result.returncode == 6, result.stderr
    assert report["result"]["tag"] == tag and images.exists(tag)


# ---------------------------------------------------------------- a probe that fails on the original


def test_a_probe_that_fails_on_the_original_stops_the_build(images, fixture_image, tmp_path):
    tag = images.tag("nginx-wrong-port")
    result, report = build(fixture_image("nginx"), tag, tmp_path, "--http-port", "8081", "--ready-timeout", "5")
    assert result.returncode == 5, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: probe 'http :8081' failed on the original image: port 8081 did not listen in the container "
        "within 5 s (it listens on 80) (fix the probe, or --probe-failure warn to carry on)"
    )
    assert report == {}
    assert not images.exists(tag)


# ---------------------------------------------------------------- slim verify


def test_slim_verify_passes_for_a_slimmed_image_and_fails_for_an_unrelated_one(images, fixture_image, tmp_path):
    tag = images.tag("nginx")
    built, _ = build(fixture_image("nginx"), tag, tmp_path)
    assert built.returncode == 0, built.stderr

    same = slim("verify", fixture_image("nginx"), tag, "--json", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    data = json.loads(same.stdout)
    assert data["verification"]["status"] == "passed"
    assert data["verification"]["invariant_failures"] == []
    http = {c["probe"]: c for c in data["verification"]["comparisons"]}["http :80"]
    assert http["same"] and "GET /docs/guide.html" in http["checked"]

    unrelated = slim("verify", fixture_image("nginx"), fixture_image("jq"), cwd=tmp_path)
    assert unrelated.returncode == 6, unrelated.stderr
    assert "DIFFERS  http :80" in unrelated.stdout
    assert "config Cmd" in unrelated.stdout
    assert unrelated.stderr.strip().splitlines()[-1].startswith(
        f"Error: {fixture_image('jq')} does not behave like {fixture_image('nginx')} ("
    )
