"""Issue 10 acceptance: what deployed code can reach works in the slimmed image, though no probe went there.

The reachapp fixture (Flask) is slimmed by the real CLI with the default probe only (a crawl of `/`, which
links nowhere). Then the original and the slimmed image run side by side with deploy-time settings the
build never used, and answer the routes nobody probed: the entrypoint's optional gzip / tr | sort steps,
`zip` run through subprocess, a credentials file a RUN step wrote under /etc, a standard-library module
imported only on an error path and one imported through importlib. The same for Node (a declared package
required in a handler) and Ruby (standard libraries required lazily, by the app and by its own lazily
required file).
"""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import zipfile

import pytest
from tests.helpers import Running, cost


pytestmark = pytest.mark.engine

SETTINGS = {"REACHAPP_PRECOMPRESS": "1", "REACHAPP_TAGS": "beta,alpha,beta"}
LOGIN = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()}
WRONG_LOGIN = {"Authorization": "Basic " + base64.b64encode(b"admin:guess").decode()}
ENTRYPOINT = "/usr/local/bin/entrypoint.sh"


def zip_names(body: bytes) -> list[str]:
    return sorted(zipfile.ZipFile(io.BytesIO(body)).namelist())


def test_unprobed_routes_and_deploy_settings_work_after_slimming(built, fixture_image, docker_client, tmp_path):
    report, tag = built("reachapp")
    print(f"reachapp slimmed: {cost(report)}")
    assert report["verification"]["status"] == "passed"
    assert {probe["probe"] for probe in report["run"]["probes"]} == {"http :8000"}  # only the default probe
    routes = ("/tags", "/guess?word=aple", "/guess?word=apple", "/report", "/login")
    with (Running(docker_client, fixture_image("reachapp"), 8000, SETTINGS) as original,
          Running(docker_client, tag, 8000, SETTINGS) as slimmed):
        expected = {route: original.get(route) for route in routes}
        answered = {route: slimmed.get(route) for route in routes}
        logins = [(side.get("/login", headers=LOGIN), side.get("/login", headers=WRONG_LOGIN))
                  for side in (original, slimmed)]
        exports = [side.get("/export.zip") for side in (original, slimmed)]
        compressed = [{change["Path"] for change in side.container.diff()} for side in (original, slimmed)]
    assert answered == expected
    assert expected["/tags"] == (200, b"alpha\nbeta\n")  # tr and sort ran in the entrypoint
    assert expected["/guess?word=aple"] == (200, b"aple: did you mean apple?\n")  # difflib, on the error path
    assert expected["/report"][1].startswith(b"word,length")  # csv, through importlib.import_module
    assert logins[1] == logins[0] == ((200, b"welcome admin\n"), (403, b"wrong password\n"))
    assert exports[0][0] == exports[1][0] == 200
    assert zip_names(exports[1][1]) == zip_names(exports[0][1]) == [
        "static/", "static/notes.txt", "static/notes.txt.gz"]  # gzip ran before
    assert "/app/static/notes.txt.gz" in compressed[1] and "/app/static/notes.txt.gz" in compressed[0]  # gzip ran

    kept = {item["path"]: item["reasons"] for item in report["kept"]}
    assert kept["/usr/bin/gzip"][0] == {"kind": "script-command", "source": ENTRYPOINT, "detail": "5"}
    assert {"kind": "script-command", "source": ENTRYPOINT, "detail": "8"} in kept["/usr/bin/sort"]
    assert kept["/usr/bin/zip"][0] == {"kind": "named-program", "source": "/app/app.py", "detail": "30"}
    assert kept["/etc/reachapp/htpasswd"][0]["kind"] == "own-configuration"
    assert {"kind": "import", "source": "/app/app.py", "detail": "58"} in kept["/usr/lib/python3.11/csv.py"]
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    explained = subprocess.run([sys.executable, "-m", "slim", "explain", str(saved), "/usr/bin/zip"],
                               capture_output=True, text=True, check=True).stdout
    assert "run by /app/app.py:30" in explained


def test_node_routes_requiring_a_declared_package_and_running_zip_work_after_slimming(built, fixture_image,
                                                                                      docker_client):
    report, tag = built("reachnode")
    print(f"reachnode slimmed: {cost(report)}")
    assert report["verification"]["status"] == "passed"
    routes = ("/check?version=1.4.2", "/check?version=2.0.0", "/check?version=next", "/slug?title=Slim%20Trace")
    with (Running(docker_client, fixture_image("reachnode"), 3000) as original,
          Running(docker_client, tag, 3000) as slimmed):
        expected = {route: original.get(route) for route in routes}
        answered = {route: slimmed.get(route) for route in routes}
        exports = [side.get("/export.zip") for side in (original, slimmed)]
    assert answered == expected
    assert json.loads(expected["/check?version=1.4.2"][1]) == {"version": "1.4.2", "valid": True, "satisfies": True}
    assert exports[0][0] == exports[1][0] == 200
    assert zip_names(exports[1][1]) == zip_names(exports[0][1]) == ["package.json"]

    kept = {item["path"]: item["reasons"] for item in report["kept"]}
    semver = next(path for path in kept if path.startswith("/usr/share/nodejs/semver/") and path.endswith(".js"))
    assert kept[semver][0] == {"kind": "declared-dependency", "source": "/app/package.json", "detail": "semver"}
    assert expected["/slug?title=Slim%20Trace"] == (200, b"slim-trace\n")
    assert kept["/usr/bin/zip"][0] == {"kind": "named-program", "source": "/app/server.js", "detail": "23"}
    kebab = "/usr/share/nodejs/lodash.kebabcase/index.js"
    assert kept[kebab][0] == {"kind": "import", "source": "/app/server.js", "detail": "18"}  # no manifest names it


def test_ruby_routes_requiring_standard_libraries_lazily_work_after_slimming(built, fixture_image, docker_client):
    report, tag = built("reachruby")
    print(f"reachruby slimmed: {cost(report)}")
    assert report["verification"]["status"] == "passed"
    routes = ("/json", "/digest", "/report")
    with (Running(docker_client, fixture_image("reachruby"), 4000) as original,
          Running(docker_client, tag, 4000) as slimmed):
        expected = {route: original.get(route) for route in routes}
        answered = {route: slimmed.get(route) for route in routes}
    assert answered == expected
    assert expected["/report"] == (200, b"word,length\napple,5\nslim,4\n")  # csv, required by a lazily required file

    kept = {item["path"]: item["reasons"] for item in report["kept"]}
    assert {"kind": "import", "source": "/app/lib/report.rb", "detail": "2"} in kept["/usr/lib/ruby/3.1.0/csv.rb"]
    assert {"kind": "import", "source": "/app/server.rb", "detail": "9"} in kept["/usr/lib/ruby/3.1.0/json.rb"]
    assert "/usr/lib/x86_64-linux-gnu/ruby/3.1.0/digest/sha2.so" in kept
    assert "/usr/lib/ruby/3.1.0/getoptlong.rb" not in kept  # the standard library is no longer kept whole
