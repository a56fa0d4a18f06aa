"""Shared by the whole suite: the engine client, the fixture images, and a check that no test leaks
containers, volumes or networks."""

import functools
import json
import shutil
import subprocess
import time
import uuid
from datetime import datetime, timezone

import docker
import pytest

import fixtures
from bench.engine_turns import engine_turn
from tests.helpers import Images, slim

LEAK_GRACE_SECONDS = 5


@pytest.fixture(scope="session")
def docker_client():
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="session")
def fixture_image(docker_client):
    """fixture_image(name) -> tag of the locally built fixture image; builds at most once a session."""
    return functools.cache(lambda name: fixtures.ensure(docker_client, name))


@pytest.fixture
def built(fixture_image, docker_client, tmp_path):
    """built(name, *args) -> (report, tag): `python -m slim build` on a fixture as a user runs it, which
    must succeed; every image it tagged is removed afterwards."""
    tags = []

    def build(name: str, *args: str) -> tuple[dict, str]:
        tag = f"slimtrace-test/{uuid.uuid4().hex[:12]}:slim"
        report = tmp_path / f"{uuid.uuid4().hex[:8]}.json"
        tags.append(tag)
        result = slim("build", fixture_image(name), "--tag", tag, "--report", report, *args)
        assert result.returncode == 0, result.stderr
        return json.loads(report.read_text()), tag

    yield build
    for tag in tags:
        try:
            docker_client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


@pytest.fixture(scope="session")
def leak_check_client():
    """An engine client, or None when no engine answers: tests that don't need one still run."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException:
        yield None
        return
    yield client
    client.close()


# A test may create engine objects when it says so (a marker), asks for an engine fixture, or lives in a
# module that talks to the engine; the others need neither the check nor the machine-wide lock.
ENGINE_MARKERS = frozenset({"engine", "matrix"})
ENGINE_FIXTURES = frozenset({"docker_client", "fixture_image", "built", "engine"})
ENGINE_MODULES = frozenset({"docker", "slim.adapters.docker_engine"})


def may_use_engine(request) -> bool:
    if any(request.node.get_closest_marker(name) for name in ENGINE_MARKERS):
        return True
    if ENGINE_FIXTURES & set(request.fixturenames):
        return True
    module = vars(request.module)
    return any(getattr(value, "__name__", None) in ENGINE_MODULES for value in module.values()) or any(
        getattr(value, "__module__", None) in ENGINE_MODULES for value in module.values()
    )


@pytest.fixture(autouse=True)
def no_leaked_engine_objects(request, leak_check_client):
    if leak_check_client is None or not may_use_engine(request):
        yield
        return
    # A machine-wide lock for one test, so that another test run (or bench) on the same engine can't create
    # objects meanwhile that would look like this test's leaks.
    with engine_turn():
        # Whole seconds: volume creation times have no fraction.
        started = datetime.now(timezone.utc).replace(microsecond=0)
        before = set(engine_objects(leak_check_client))
        yield
        leaked = created_since(leak_check_client, before, started)
    if leaked:
        # Someone's image build on the same engine makes short-lived containers; a leak stays.
        time.sleep(LEAK_GRACE_SECONDS)
        leaked &= created_since(leak_check_client, before, started)
    if leaked:
        pytest.fail(f"test left behind: {', '.join(sorted(leaked))}")


def created_since(client, before: set[str], started: datetime) -> set[str]:
    # Only objects created during the test count, so one created concurrently just before is no leak.
    return {name for name, created in engine_objects(client).items() if name not in before and created >= started}


def engine_objects(client) -> dict[str, datetime]:
    """Every container, volume and network, by a readable unique name, with its creation time."""
    created = {}
    for container in client.containers.list(all=True, ignore_removed=True):
        description = f"container {container.name} ({container.short_id}, image {container.attrs['Config']['Image']})"
        created[description] = container.attrs["Created"]
    for volume in client.volumes.list():
        created[f"volume {volume.name}"] = volume.attrs["CreatedAt"]
    for network in client.networks.list():
        created[f"network {network.name} ({network.short_id})"] = network.attrs["Created"]
    # The engine writes RFC 3339 times, which fromisoformat reads since Python 3.11.
    return {name: datetime.fromisoformat(stamp) for name, stamp in created.items()}


@pytest.fixture
def images(docker_client):
    """An Images for the test: every tag it hands out is removed afterwards."""
    made = Images(docker_client)
    try:
        yield made
    finally:
        made.remove_all()


@pytest.fixture
def tmpfs(tmp_path):
    """A fresh filesystem of our own, so a FAN_MARK_FILESYSTEM mark sees only what the test does."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "slimtrace-test", str(mount)], check=True)
    (mount / "data.txt").write_text("data\n")
    (mount / "unread.txt").write_text("never opened\n")
    (mount / "dir").mkdir()
    shutil.copy("/bin/true", mount / "prog")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)
