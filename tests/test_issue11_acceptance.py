"""Issue 11 acceptance: a verifier that never cries wolf, and probes that reach further.

The `webstack` fixture is what the issue describes, with real servers: Debian's nginx in front (web UI,
static files, `/api/` proxied) of a FastAPI app that a shell script starts in the background on the
container's loopback, which answers 503 until its catalogue is loaded, whose status page shows the time,
the uptime and a request counter, and whose OpenAPI document names a route nothing links to. The CLI runs as
a user runs it; every image a test makes is removed.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tests.helpers import Running, comparisons, slim


pytestmark = pytest.mark.engine

# The CLI runs from this checkout's root, so `python -m slim` is this checkout's slimtrace whatever else is
# installed on the machine.
CHECKOUT = Path(__file__).resolve().parents[1]

# What the UI's pages load, by relative URLs: in subdirectories, through <base href>, srcset, a manifest,
# a CSS @import and CSS url()s.
UI_FILES = (
    "/ui/", "/ui/css/main.css", "/ui/css/theme.css", "/ui/js/app.js", "/ui/js/vendor/chart.js",
    "/ui/img/logo.png", "/ui/img/logo-2x.png", "/ui/img/favicon.png", "/ui/img/bg.png", "/ui/img/pattern.png",
    "/ui/img/help.png", "/ui/manifest.webmanifest", "/ui/help/", "/ui/search.html", "/static/status.css",
)
NOTES = "/api/items/lamp/notes"  # rendered with Markdown, imported by that route only; only the spec names it


def build(image: str, tag: str, tmp_path: Path, *args: str):
    report = tmp_path / "report.json"
    result = slim("build", image, "--tag", tag, "--report", str(report), *args, cwd=CHECKOUT)
    return result, json.loads(report.read_text()) if report.exists() else {}


def get(url: str, attempts: int = 150) -> tuple[int, bytes]:
    """The answer once the app is up: refused, reset and 502/503 (nginx before its backend) are retried."""
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            if error.code not in (502, 503):
                return error.code, error.read()
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def served(client, image: str, paths) -> dict[str, int]:
    with Running(client, image, 8080) as app:
        return {path: get(app.url(path))[0] for path in paths}


@pytest.fixture
def webstack(fixture_image) -> str:
    return fixture_image("webstack")


def test_proxy_with_a_late_backend_and_volatile_pages_verifies_and_the_ui_is_whole(
    images, webstack, docker_client, tmp_path
):
    tag = images.tag("webstack")
    result, report = build(webstack, tag, tmp_path)
    assert result.returncode == 0, result.stderr
    assert report["verification"]["status"] == "passed"
    assert ["127.0.0.1", 9000] in report["run"]["listening"]  # the API, on the loopback only
    http = comparisons(report)["http :8080"]
    assert "127.0.0.1:9000" in http["readiness"]
    # The status page and the statistics changed between the original's two runs: compared by what stayed.
    assert http["volatile"]["GET /api/status"] == "status 200, content type, HTML structure"
    assert http["volatile"]["GET /api/stats"].startswith("status 200, content type, JSON keys, ")
    crawled = {key.removeprefix("GET ") for key in http["checked"]}
    assert set(UI_FILES) <= crawled
    assert NOTES not in crawled  # nothing links to it: without --openapi it is not probed, and breaks
    assert served(docker_client, tag, [*UI_FILES, NOTES]) == {**dict.fromkeys(UI_FILES, 200), NOTES: 500}


def test_the_ui_files_are_kept_because_the_crawl_loaded_them(images, webstack, docker_client, tmp_path):
    """Without the rule that keeps every file the image's own layers added, only what the run used is kept."""
    tag = images.tag("webstack-used")
    result, report = build(webstack, tag, tmp_path, "--app-files", "none")
    assert result.returncode == 0, result.stderr
    kept = {item["path"] for item in report["kept"]}
    assert {"/var/www/html/ui/img/pattern.png", "/var/www/html/ui/img/help.png"} <= kept  # CSS url(), <base>
    assert served(docker_client, tag, UI_FILES) == dict.fromkeys(UI_FILES, 200)


def test_without_the_api_it_still_fails(images, webstack, tmp_path):
    """The wait for the backend's socket and the warm-up are bounded: a 502 that stays is a difference."""
    result, report = build(webstack, images.tag("webstack-noapi"), tmp_path,
                           "--exclude-path", "/app/app.py", "--ready-timeout", "10")
    assert result.returncode == 6, result.stderr
    http = comparisons(report)["http :8080"]
    assert not http["same"]
    assert "status 502, the original 200" in http["slimmed"]
    assert "missing: 127.0.0.1:9000" in http["readiness"]


def test_a_stylesheet_the_volatile_status_page_links_that_is_gone_fails(images, webstack, tmp_path):
    result, report = build(webstack, images.tag("webstack-nocss"), tmp_path,
                           "--exclude-path", "/var/www/html/static/status.css")
    assert result.returncode == 6, result.stderr
    assert "GET /static/status.css: status 404, the original 200" in comparisons(report)["http :8080"]["slimmed"]


def openapi_document(client, image: str, directory: Path) -> Path:
    """The API's own OpenAPI document, as FastAPI generates it inside the image."""
    script = "import json, sys; sys.path.insert(0, '/app'); import app; print(json.dumps(app.app.openapi()))"
    output = client.containers.run(image, ["python3", "-c", script], remove=True)
    path = directory / "openapi.json"
    path.write_bytes(output)
    return path


def test_openapi_probes_every_get_operation_and_a_route_only_the_spec_names_works(
    images, webstack, docker_client, tmp_path
):
    spec = openapi_document(docker_client, webstack, tmp_path)
    operations = [f"GET /api{path}" for path, item in json.loads(spec.read_text())["paths"].items() if "get" in item]
    tag = images.tag("webstack-openapi")
    result, report = build(webstack, tag, tmp_path, "--openapi", str(spec))
    assert result.returncode == 0, result.stderr
    checked = comparisons(report)["http :8080"]["checked"]
    assert {operation.replace("{item_id}", "lamp") for operation in operations} <= set(checked)
    with Running(docker_client, tag, 8080) as app:
        status, body = get(app.url(NOTES))
    assert (status, b"<em>warm</em>" in body) == (200, True)
