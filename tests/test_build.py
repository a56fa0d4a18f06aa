"""`slim build` end to end, as a user runs it: real engine, real fanotify, locally built fixture images.

Each slimmed image is checked against its original by running both, not by trusting our own report.
"""
from __future__ import annotations

import hashlib
import shlex
import tarfile
import time
import urllib.request
from pathlib import Path, PurePosixPath

import pytest

from slim.adapters.docker_engine import DockerEngine
from slim.model import EntryKind
from slim.image.rootfs import RootFS, spool_image
from tests.run_settings import RUN_SETTINGS

pytestmark = pytest.mark.engine

NGINX_PAGES = ("/", "/about.html", "/docs/guide.html", "/style.css", "/logo.png")


def serve_and_fetch(client, image: str, port: int, paths) -> dict[str, tuple[int, str]]:
    """Run `image`, GET each path on its published port, return status and body digest per path."""
    container = client.containers.run(image, detach=True, ports={f"{port}/tcp": ("127.0.0.1", None)}, **RUN_SETTINGS)
    try:
        host_port = published_port(container, port)
        return {path: fetch(f"http://127.0.0.1:{host_port}{path}") for path in paths}
    finally:
        container.remove(force=True, v=True)


def published_port(container, port: int) -> int:
    container.reload()
    return int(container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"])


def fetch(url: str, attempts: int = 100) -> tuple[int, str]:
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, hashlib.sha256(response.read()).hexdigest()
        except OSError:  # not listening yet (docker-proxy resets the connection)
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def run_batch(client, image: str) -> tuple[int, bytes]:
    container = client.containers.run(image, detach=True, **RUN_SETTINGS)
    try:
        code = container.wait(timeout=60)["StatusCode"]
        return code, container.logs(stdout=True, stderr=False)
    finally:
        container.remove(force=True, v=True)


def slimmed_rootfs(image: str, tmp_path: Path) -> RootFS:
    engine = DockerEngine()
    return RootFS.from_layers(spool_image(engine, engine.inspect_image(image).id, tmp_path / "spool"))


@pytest.mark.matrix
def test_nginx_serves_the_same_bytes_at_a_tenth_of_the_size(built, fixture_image, docker_client):
    report, tag = built("nginx")
    assert report["verification"]["status"] == "passed"
    assert report["result"]["size"] * 10 <= report["source"]["size"]
    original = serve_and_fetch(docker_client, fixture_image("nginx"), 80, NGINX_PAGES)
    slimmed = serve_and_fetch(docker_client, tag, 80, NGINX_PAGES)
    assert slimmed == original
    assert all(status == 200 for status, _ in original.values())


@pytest.mark.matrix
def test_nginx_keeps_its_config_and_says_why_each_file_is_kept(built, fixture_image, docker_client):
    report, tag = built("nginx")
    source = docker_client.images.get(fixture_image("nginx")).attrs["Config"]
    result = docker_client.images.get(tag).attrs["Config"]
    for key in ("Entrypoint", "Cmd", "Env", "WorkingDir", "User", "ExposedPorts", "StopSignal", "Volumes"):
        assert result.get(key) == source.get(key), key
    assert result["Labels"]["io.slimtrace.source-image"] == docker_client.images.get(fixture_image("nginx")).id
    kept = {item["path"]: item["reasons"] for item in report["kept"]}
    assert kept["/usr/sbin/nginx"][0]["kind"] == "traced"
    assert kept["/usr/lib/x86_64-linux-gnu/libc.so.6"][0]["kind"] in ("traced", "elf-needed")
    assert kept["/lib64"][0]["kind"] == "symlink"
    assert kept["/etc/passwd"] and kept["/etc/group"]
    assert report["trace"]["complete"] is True and report["trace"]["overflow"] is False
    assert set(report["timings"]) >= {"inspect", "index", "trace", "closure", "assemble", "verify"}


@pytest.mark.matrix
def test_batch_image_prints_the_same_output_and_exit_code(built, fixture_image, docker_client):
    report, tag = built("jq")
    assert report["run"]["mode"] == "batch"
    assert run_batch(docker_client, tag) == run_batch(docker_client, fixture_image("jq"))


def test_python_app_answers_the_probed_url_the_same(built, fixture_image, docker_client):
    report, tag = built("pyapp")
    assert report["verification"]["status"] == "passed"
    assert serve_and_fetch(docker_client, tag, 8000, ["/"]) == serve_and_fetch(
        docker_client, fixture_image("pyapp"), 8000, ["/"]
    )
    assert report["result"]["size"] < report["source"]["size"] / 2


@pytest.mark.matrix
def test_from_scratch_image_runs_the_same(built, fixture_image, docker_client):
    _, tag = built("firstread")
    assert run_batch(docker_client, tag) == run_batch(docker_client, fixture_image("firstread"))


@pytest.mark.matrix
def test_capabilities_hard_links_symlinks_and_owners_survive(built, fixture_image, docker_client, tmp_path):
    report, tag = built("caps", "--cap-add", "NET_RAW")
    assert run_batch(docker_client, tag) == run_batch(docker_client, fixture_image("caps"))
    original = slimmed_rootfs(fixture_image("caps"), tmp_path / "original")
    slimmed = slimmed_rootfs(tag, tmp_path / "slimmed")
    capcat = PurePosixPath("/usr/local/bin/capcat")
    assert slimmed.get(capcat).xattrs["security.capability"] == original.get(capcat).xattrs["security.capability"]
    assert slimmed.get(capcat).hardlink_group == (capcat, PurePosixPath("/usr/local/bin/capcat-hard"))
    for path in ("/srv/link-to-data", "/data/current"):
        assert slimmed.get(PurePosixPath(path)).kind is EntryKind.SYMLINK
        assert slimmed.get(PurePosixPath(path)).link_target == original.get(PurePosixPath(path)).link_target
    for path in ("/data/private", "/data/private/secret.txt", "/usr/local/bin", "/usr/local/bin/capcat"):
        before, after = original.get(PurePosixPath(path)), slimmed.get(PurePosixPath(path))
        assert (after.mode, after.uid, after.gid, after.mtime) == (before.mode, before.uid, before.gid, before.mtime)


@pytest.mark.matrix
def test_hard_linked_file_is_stored_once(built, docker_client, tmp_path):
    _, tag = built("caps", "--cap-add", "NET_RAW")
    layer = next(iter(spool_image(DockerEngine(), docker_client.images.get(tag).id, tmp_path)))
    with tarfile.open(layer) as tar:
        members = {m.name: m for m in tar.getmembers() if m.name.startswith("usr/local/bin/capcat")}
    kinds = sorted((m.type for m in members.values()))
    assert kinds == sorted([tarfile.REGTYPE, tarfile.LNKTYPE])


@pytest.mark.matrix
def test_same_input_gives_the_same_image(built):
    first, _ = built("jq")
    second, _ = built("jq")
    assert first["result"]["layer_diff_id"] == second["result"]["layer_diff_id"]
    assert first["result"]["id"] == second["result"]["id"]


def test_include_path_adds_files_and_the_original_is_untouched(built, fixture_image, docker_client):
    original = docker_client.images.get(fixture_image("jq"))
    report, _ = built("jq", "--include-path", "/usr/share/doc/jq")
    kept = {item["path"]: item["reasons"][0]["kind"] for item in report["kept"]}
    assert kept["/usr/share/doc/jq/copyright"] == "include-path"
    after = docker_client.images.get(fixture_image("jq"))
    assert (after.id, after.tags) == (original.id, original.tags)


@pytest.mark.matrix
def test_no_temp_dirs_left_behind(built):
    before = set(Path("/tmp").glob("slimtrace-*"))
    built("jq")
    assert set(Path("/tmp").glob("slimtrace-*")) - before == set()


def test_a_file_read_only_while_the_server_stops_is_in_the_image(built, docker_client):
    """The closure and image made when the probes ended lack what the server reads while stopping: the image
    is made again from the whole trace, and that one is the image tagged."""
    shutdown = "trap 'cat /etc/debian_version > /dev/null; exit 0' TERM; sleep 60 & wait"
    report, tag = built("base", "--cmd", f"sh -c {shlex.quote(shutdown)}", "--exec", "true")
    kept = {item["path"]: item for item in report["kept"]}
    assert "/etc/debian_version" in kept and "/usr/bin/cat" in kept
    output = docker_client.containers.run(tag, entrypoint=["cat", "/etc/debian_version"], remove=True)
    assert output.decode().strip()[:2].isdigit()  # "12.x"
    assert docker_client.images.get(tag).id == report["result"]["id"]
