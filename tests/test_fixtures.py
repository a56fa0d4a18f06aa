"""Each fixture image builds and does its one job. Traffic only ever goes to 127.0.0.1."""

import hashlib
import json
import time
import urllib.error
import urllib.request

import pytest

from fixtures.catalog import IMAGES_DIR
from tests.helpers import Running

pytestmark = pytest.mark.engine

STARTUP_SECONDS = 60


def run_to_exit(client, tag, **options) -> tuple[int, str]:
    """Run a container until it exits; return its exit code and combined output."""
    container = client.containers.create(tag, **options)
    try:
        container.start()
        status = container.wait(timeout=STARTUP_SECONDS)
        return status["StatusCode"], container.logs().decode()
    finally:
        container.remove(force=True, v=True)


def http_get(port, path) -> bytes:
    """GET from 127.0.0.1, retrying while the server is still starting."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                return response.read()
        except urllib.error.HTTPError:
            raise  # the server is up and said no: retrying won't help
        except OSError:
            # Until the server listens, the engine's port proxy accepts and then drops the connection.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def exec_until_ok(container, command) -> str:
    """exec `command` until it exits 0 (the server in the container may still be starting)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        exit_code, output = container.exec_run(command)
        if exit_code == 0:
            return output.decode()
        assert time.monotonic() < deadline, f"{command} kept failing: {output.decode()}"
        time.sleep(0.5)


def test_nginx_serves_the_static_site(docker_client, fixture_image):
    with Running(docker_client, fixture_image("nginx"), 80) as app:
        port = app.host_port
        assert b'href="/about.html"' in http_get(port, "/")
        assert b"only reachable by following a link" in http_get(port, "/docs/guide.html")
        assert http_get(port, "/logo.png").startswith(b"\x89PNG")


def test_jq_counts_high_scores(docker_client, fixture_image):
    assert run_to_exit(docker_client, fixture_image("jq")) == (0, "4\n")


def test_pyapp_serves_all_routes(docker_client, fixture_image):
    with Running(docker_client, fixture_image("pyapp"), 8000) as app:
        port = app.host_port
        assert b'href="/items"' in http_get(port, "/")
        assert b"Hello, slimtrace!" in http_get(port, "/hello")
        assert [item["name"] for item in json.loads(http_get(port, "/items"))] == ["kettle", "teapot", "mug"]
        assert http_get(port, "/zone") in (b"CET", b"CEST")


def test_caps_prints_both_files(docker_client, fixture_image):
    exit_code, output = run_to_exit(docker_client, fixture_image("caps"))
    assert exit_code == 0
    assert "message: reached through" in output
    assert "secret: owned by 1234:2345" in output


def test_caps_keeps_capability_link_and_owners(docker_client, fixture_image):
    script = (
        "getcap /usr/local/bin/capcat;"
        " stat -c '%i' /usr/local/bin/capcat /usr/local/bin/capcat-hard;"
        " stat -c '%n %u:%g %a' /data/private /data/private/secret.txt;"
        " readlink /data/current /srv/link-to-data"
    )
    exit_code, output = run_to_exit(docker_client, fixture_image("caps"), entrypoint=["sh", "-c", script])
    assert exit_code == 0, output
    lines = output.splitlines()
    assert lines[0] == "/usr/local/bin/capcat cap_net_raw=ep"
    assert lines[1] == lines[2], "capcat-hard is a hard link to capcat"
    assert lines[3:] == [
        "/data/private 1234:2345 750",
        "/data/private/secret.txt 1234:2345 640",
        "message.txt",
        "/data",
    ]


def test_firstread_prints_the_first_file(docker_client, fixture_image):
    exit_code, output = run_to_exit(docker_client, fixture_image("firstread"))
    assert (exit_code, output) == (0, "first: the first file this program opens\n")


def test_jdkapp_counts_words(docker_client, fixture_image):
    exit_code, output = run_to_exit(docker_client, fixture_image("jdkapp"))
    words = (IMAGES_DIR / "jdkapp/app/data/words.txt").read_bytes()
    assert exit_code == 0, output
    assert output.splitlines()[0] == "the 7"
    assert output.splitlines()[-1] == f"sha256 {hashlib.sha256(words).hexdigest()}"


def test_redis_answers_ping_as_redis_user(docker_client, fixture_image):
    with Running(docker_client, fixture_image("redis"), 6379) as app:
        container = app.container
        assert exec_until_ok(container, ["redis-cli", "ping"]) == "PONG\n"
        assert container.exec_run(["id", "-un"]).output == b"redis\n"


def test_nodeapp_serves_linked_pages_and_lazy_report(docker_client, fixture_image):
    with Running(docker_client, fixture_image("nodeapp"), 3000) as app:
        port = app.host_port
        assert b'href="/a.html"' in http_get(port, "/")
        assert b'href="/deep/b.html"' in http_get(port, "/a.html")
        assert b"Page B" in http_get(port, "/deep/b.html")
        assert json.loads(http_get(port, "/report"))["pages"] == ["/", "/a.html", "/deep/b.html"]


def test_postgres_has_the_seeded_table(docker_client, fixture_image):
    with Running(docker_client, fixture_image("postgres"), 5432) as app:
        container = app.container
        query = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-At", "-c", "select count(*) from fruits"]
        assert exec_until_ok(container, query) == "3\n"
