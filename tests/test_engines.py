"""What makes slimtrace work on every engine (Docker 20.10, Docker 26 with overlay2 or the containerd image
store, Podman): the engine is the one DOCKER_HOST names, as in the per-engine test matrix."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import socket
import threading
import uuid
from pathlib import Path, PurePosixPath

import docker
import pytest

from slim.adapters.docker_engine import DockerEngine
from slim.engine import ContainerSpec, Ulimit
from slim.enginehost import OVERLAY_DRIVERS, EngineHost, require_local, require_traceable_storage, this_machine
from slim.errors import ExitCode, TracingUnavailable
from slim.image.rootfs import RootFS, layer_steps, saved_config, spool_image
from slim.adapters.fanotify_tracer import require_own_overlay
from tests.helpers import slim


# ---------------------------------------------------------------- deciding up front (pure)


@pytest.mark.parametrize("change, words", [
    ({"hostname": "build-server-7"}, "host name 'build-server-7'"),
    ({"kernel": "5.10.0-28-amd64"}, "kernel '5.10.0-28-amd64'"),
    ({"memory": 8 << 30}, "memory 8589934592"),
])
def test_an_engine_describing_another_machine_is_refused(change, words):
    here = this_machine()
    with pytest.raises(TracingUnavailable, match=words) as refused:
        require_local(dataclasses.replace(here, **change), here)
    assert refused.value.exit_code == ExitCode.CANNOT_TRACE
    require_local(here, here)


@pytest.mark.parametrize("driver", ["vfs", "btrfs", "zfs", "devicemapper", "fuse-overlayfs", "native", ""])
def test_storage_without_an_overlay_per_container_is_refused(driver):
    with pytest.raises(TracingUnavailable, match=f"the {driver!r} storage driver"):
        require_traceable_storage(EngineHost("h", "k", 1, driver))


def test_a_container_root_on_the_hosts_filesystem_is_refused():
    # What vfs storage would hand us: a plain directory of the host's filesystem (the kernel says which).
    with pytest.raises(TracingUnavailable, match=r"not an overlay of its own \(statfs type 0x"):
        require_own_overlay(Path("/proc/self/root"))


@pytest.mark.parametrize("value, words", [
    ("nofile=10:5", "must not exceed"),
    ("nofile=-1:1024", "must not exceed"),
    ("open-files=1024", "is not one of"),
    ("nofile=many", "whole numbers"),
])
def test_a_bad_ulimit_is_a_usage_error(value, words):
    result = slim("build", "x:1", "--ulimit", value)
    assert result.returncode == ExitCode.USAGE and words in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- the engine in DOCKER_HOST


@pytest.fixture(scope="module")
def engine():
    return DockerEngine()


@pytest.mark.engine
@pytest.mark.matrix
def test_the_sdk_speaks_the_engines_own_api_version(engine, docker_client):
    assert engine._client.api.api_version == docker_client.version()["ApiVersion"]


@pytest.mark.engine
@pytest.mark.matrix
def test_this_engine_is_here_and_stores_containers_on_overlays(engine):
    host = engine.host()
    require_local(host, this_machine())
    assert host.storage_driver in OVERLAY_DRIVERS


@pytest.mark.engine
@pytest.mark.matrix
def test_ulimits_reach_the_container(engine, fixture_image):
    spec = ContainerSpec(image=fixture_image("jq"), entrypoint=("sh",), command=("-c", "ulimit -n; ulimit -Hn"),
                         ulimits=(Ulimit("nofile", 2048, 4096),))
    container_id = engine.create_container(spec)
    try:
        engine.start(container_id)
        assert engine.wait(container_id, timeout=120) == 0
        assert engine.stdout(container_id).decode().split() == ["2048", "4096"]
    finally:
        engine.remove_container(container_id)


@pytest.mark.engine
@pytest.mark.matrix
def test_an_engine_reached_over_tcp_on_this_machine_is_local(fixture_image, docker_client, tmp_path):
    """Locality is what the engine reports, not the URL's scheme: tcp://127.0.0.1 is this machine."""
    tag = f"slimtrace-test/{uuid.uuid4().hex[:12]}:slim"
    with _tcp_to_engine(docker_client) as port:
        result = slim("build", fixture_image("firstread"), "--tag", tag, "--report", str(tmp_path / "r.json"),
                      env={"DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
    try:
        assert result.returncode == 0, result.stderr
    finally:
        docker_client.images.remove(tag, force=True)


class _tcp_to_engine:
    """A TCP port on 127.0.0.1 that forwards each connection to the engine's unix socket."""

    def __init__(self, docker_client):
        base_url = docker_client.api.base_url  # "http+docker://localhost" for a unix socket
        url = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if not url.startswith("unix://") or "localhost" not in base_url:
            pytest.skip("the engine is not on a unix socket")
        self._socket_path = url.removeprefix("unix://")
        self._listener = socket.create_server(("127.0.0.1", 0))

    def __enter__(self) -> int:
        threading.Thread(target=self._accept, daemon=True).start()
        return self._listener.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed: the test is over
                return
            engine = socket.socket(socket.AF_UNIX)
            engine.connect(self._socket_path)
            for source, sink in ((client, engine), (engine, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError), source, sink:  # the other direction may have closed both already
        while data := source.recv(1 << 16):
            sink.sendall(data)


@pytest.mark.engine
@pytest.mark.matrix
def test_an_image_built_on_this_engine_is_read_whole(engine, fixture_image, docker_client, tmp_path):
    """The engine saves the layers it built as it stores them: plain on a graph driver, gzip in the
    containerd store (recognised by their magic bytes)."""
    dockerfile = f"FROM {fixture_image('jq')}\nRUN echo built here > /built.txt\n".encode()
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), rm=True, forcerm=True)
    try:
        layers = spool_image(engine, image.id, tmp_path)
        assert RootFS.from_layers(layers).read(PurePosixPath("/built.txt")) == b"built here\n"
        assert layer_steps(saved_config(tmp_path, image.id), len(layers))[-1].endswith("echo built here > /built.txt")
    finally:
        docker_client.images.remove(image.id, force=True)
