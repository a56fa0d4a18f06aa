"""Issue 12: a slimmed image that scanners can still see, checked by independent consumers on a REAL
build of the nginx fixture: debsbom (an SBOM generator that reads the dpkg database), dpkg-query and
`dpkg --verify` read the slimmed root exported from the engine; the CycloneDX library's own JSON schema
validator checks our SBOM, and its package set is compared with debsbom's.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from slim.image.package_db import deb822_fields
from slim.build.sbom import SBOM_PATH, package_purls, validation_errors

pytestmark = pytest.mark.engine


REPOSITORY = Path(__file__).resolve().parent.parent


def slim_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # Run in another directory, `python -m slim` must still be this checkout, not whatever is installed.
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    return subprocess.run([sys.executable, "-m", "slim", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=900)


def exported_root(docker_client, image: str, target: Path) -> Path:
    """The image's filesystem as `docker export` writes it (a created, never started container)."""
    container = docker_client.containers.create(image)
    try:
        stream = io.BytesIO(b"".join(container.export()))
    finally:
        container.remove()
    with tarfile.open(fileobj=stream) as tar:
        # Device nodes cannot be made without privileges and are of no interest here.
        tar.extractall(target, members=[m for m in tar if not (m.ischr() or m.isblk())], filter="tar")
    return target


@pytest.fixture(scope="module")
def nginx(fixture_image, docker_client, tmp_path_factory):
    """One real `slim build` of the nginx fixture with defaults: the report, the SBOM written next to it, and
    the exported roots of the original and the slimmed image."""
    directory = tmp_path_factory.mktemp("scanners")
    tag = f"slimtrace-test/scanners-{uuid.uuid4().hex[:10]}:nginx"
    report_name = "nginx.slim-report.json"
    result = slim_cli("build", fixture_image("nginx"), "--tag", tag, "--report", report_name, cwd=directory)
    try:
        assert result.returncode == 0, result.stderr
        report = json.loads((directory / report_name).read_text())
        yield {
            "directory": directory,
            "report": report,
            "tag": tag,
            "original": exported_root(docker_client, fixture_image("nginx"), directory / "original"),
            "slimmed": exported_root(docker_client, tag, directory / "slimmed"),
        }
    finally:
        if docker_client.images.list(tag):
            docker_client.images.remove(tag, force=True)


def debsbom_packages(root: Path, out: Path) -> dict[str, tuple[str, str]]:
    """name -> (version, architecture) of the binary packages debsbom finds in ROOT."""
    debsbom = shutil.which("debsbom")
    assert debsbom, "debsbom is not installed (python3 -m pip install 'debsbom[cdx]')"
    run = subprocess.run([debsbom, "generate", "-r", str(root), "-t", "cdx", "-o", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    document = json.loads(out.with_suffix(".cdx.json").read_text())
    return {
        c["name"]: (c["version"], c["purl"].rsplit("arch=", 1)[1])
        for c in document["components"] if "arch=source" not in c["purl"]
    }


def dpkg_query(root: Path) -> dict[str, tuple[str, str]]:
    run = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package}\t${Version}\t${Architecture}\n"],
        capture_output=True, text=True, check=True,
    )
    return {name: (version, arch) for name, version, arch in (line.split("\t") for line in run.stdout.splitlines())}


def kept_in_report(report: dict) -> dict[str, tuple[str, str]]:
    return {p["name"]: (p["version"], p["architecture"]) for p in report["packages"]["kept_packages"]}


def purl_packages(document: str) -> dict[str, tuple[str, str]]:
    """name -> (version, arch) of the deb components of our SBOM, as debsbom's purls spell them."""
    from packageurl import PackageURL

    purls = [PackageURL.from_string(p) for p in package_purls(document)]
    return {p.name: (p.version, p.qualifiers["arch"]) for p in purls if p.type == "deb"}


# ---------------------------------------------------------------- the trimmed database


def test_debsbom_finds_exactly_the_kept_packages_with_the_original_versions(nginx):
    report, directory = nginx["report"], nginx["directory"]
    original = debsbom_packages(nginx["original"], directory / "original-debsbom")
    slimmed = debsbom_packages(nginx["slimmed"], directory / "slimmed-debsbom")
    assert slimmed == kept_in_report(report)
    assert {name: original[name] for name in slimmed} == slimmed  # the same versions as the original's
    assert report["packages"]["original"] == len(original)
    # nginx itself and what it links are there; the tools nothing ran are not.
    assert {"nginx", "libc6", "libssl3", "libpcre2-8-0", "zlib1g"} <= set(slimmed)
    assert not {"curl", "wget", "perl-base", "vim-tiny", "bash", "apt"} & set(slimmed)
    removed = {p["name"] for p in report["packages"]["removed_packages"]}
    assert removed == set(original) - set(slimmed)


def test_dpkg_query_agrees_and_the_stanzas_are_the_originals(nginx):
    assert dpkg_query(nginx["slimmed"]) == kept_in_report(nginx["report"])
    original = (nginx["original"] / "var/lib/dpkg/status").read_text().split("\n\n")
    slimmed = [p for p in (nginx["slimmed"] / "var/lib/dpkg/status").read_text().split("\n\n") if p.strip()]
    assert len(slimmed) == nginx["report"]["packages"]["kept"]
    assert all(paragraph.strip("\n") in original for paragraph in slimmed)
    assert {deb822_fields(p)["Status"] for p in slimmed} == {"install ok installed"}


def test_dpkg_verify_finds_no_changed_file(nginx):
    root = nginx["slimmed"]
    for name in kept_in_report(nginx["report"]):
        run = subprocess.run(["dpkg", f"--root={root}", "--verify", name], capture_output=True, text=True)
        # Format "??5?????? c /path": a 5 in the third column is a checksum mismatch. Only a missing file
        # (a conffile of the status stanza that was removed) may be reported.
        changed = [line for line in run.stdout.splitlines() if line[2:3] == "5"]
        assert changed == [], (name, changed)
        assert all(line.startswith("missing") for line in run.stdout.splitlines()), (name, run.stdout)
    # dpkg does check: a kept file changed after the fact is reported.
    binary = root / "usr/sbin/nginx"
    unchanged = binary.read_bytes()
    try:
        binary.write_bytes(unchanged + b"\0")
        run = subprocess.run(["dpkg", f"--root={root}", "--verify", "nginx"], capture_output=True, text=True)
    finally:
        binary.write_bytes(unchanged)
    assert "??5??????   /usr/sbin/nginx" in run.stdout


def test_file_lists_name_only_kept_files(nginx):
    root = nginx["slimmed"]
    info = root / "var/lib/dpkg/info"
    lists = sorted(info.glob("*.list"))
    assert len(lists) == nginx["report"]["packages"]["kept"]
    for listed in lists:
        for line in listed.read_text().splitlines():
            assert (root / line.lstrip("/")).exists() or (root / line.lstrip("/")).is_symlink(), (listed.name, line)
    assert "/usr/sbin/nginx" in (info / "nginx.list").read_text().splitlines()
    assert not (info / "curl.list").exists() and not (info / "nginx.postinst").exists()


def test_copyright_files_of_kept_packages_at_a_small_cost(nginx):
    report, root = nginx["report"], nginx["slimmed"]
    reasons = {item["path"]: item["reasons"][0]["kind"] for item in report["kept"]}
    for name in kept_in_report(report):
        copyright_file = f"/usr/share/doc/{name}/copyright"
        if (nginx["original"] / copyright_file.lstrip("/")).exists():
            assert (root / copyright_file.lstrip("/")).is_file(), copyright_file
    assert reasons["/usr/share/doc/nginx/copyright"] == "license"
    assert reasons["/var/lib/dpkg/status"] == "package-database"
    assert not (root / "usr/share/doc/curl").exists()
    cost = report["bytes_by_reason"]["package-database"] + report["bytes_by_reason"]["license"]
    assert cost < 0.05 * report["result"]["size"]


def test_explain_names_the_package_database_and_license(nginx):
    run = slim_cli("explain", "nginx.slim-report.json", "/var/lib/dpkg/status", cwd=nginx["directory"])
    assert run.returncode == 0, run.stderr
    assert "package database, trimmed to the kept packages of dpkg" in run.stdout
    run = slim_cli("explain", "nginx.slim-report.json", "/usr/share/doc/libssl3/copyright", cwd=nginx["directory"])
    assert "license of package libssl3" in run.stdout


# ---------------------------------------------------------------- the SBOM


def test_sbom_validates_and_lists_what_debsbom_finds(nginx):
    report, directory = nginx["report"], nginx["directory"]
    written = directory / report["sbom"]["path"]  # next to the report: relative, as the report path was given
    assert written == directory / "nginx.sbom.cdx.json"
    document = written.read_text()
    assert validation_errors(document) is None
    assert json.loads(document)["specVersion"] == "1.6"
    assert purl_packages(document) == debsbom_packages(nginx["slimmed"], directory / "sbom-debsbom")
    image = json.loads(document)["metadata"]["component"]
    properties = {p["name"]: p["value"] for p in image["properties"]}
    assert properties == {
        "slimtrace:image-id": report["result"]["id"], "slimtrace:source-image": report["source"]["id"]
    }
    # The copy inside the image: the same packages, without its own id (which depends on it).
    stored = (nginx["slimmed"] / str(SBOM_PATH).lstrip("/")).read_text()
    assert validation_errors(stored) is None
    assert package_purls(stored) == package_purls(document)
    nginx_component = next(c for c in json.loads(document)["components"] if c["name"] == "nginx")
    hashed = {f["name"]: f["hashes"][0] for f in nginx_component["components"]}
    assert hashed["/usr/sbin/nginx"]["alg"] == "MD5"


def test_slim_sbom_of_any_image_matches_debsbom(nginx, fixture_image):
    directory = nginx["directory"]
    run = slim_cli("sbom", fixture_image("nginx"), "-o", "original.cdx.json", cwd=directory)
    assert run.returncode == 0, run.stderr
    original = (directory / "original.cdx.json").read_text()
    assert validation_errors(original) is None
    assert purl_packages(original) == debsbom_packages(nginx["original"], directory / "original-debsbom")
    slimmed = slim_cli("sbom", nginx["tag"], cwd=directory)
    assert slimmed.returncode == 0, slimmed.stderr
    assert package_purls(slimmed.stdout) == package_purls((directory / nginx["report"]["sbom"]["path"]).read_text())


def test_slim_sbom_of_a_missing_image_is_exit_3(nginx):
    run = slim_cli("sbom", "slimtrace-test/no-such-image:1", cwd=nginx["directory"])
    assert run.returncode == 3 and "Traceback" not in run.stderr


# ---------------------------------------------------------------- attack surface


def test_attack_surface_original_against_slimmed(nginx):
    surface = {c["key"]: c for c in nginx["report"]["attack_surface"]}
    assert "/usr/bin/curl" in surface["network-tools"]["original"]
    assert "/usr/bin/apt-get" in surface["package-managers"]["original"]
    assert "/usr/bin/bash" in surface["shells"]["original"]
    assert any(path.endswith("/perl") for path in surface["interpreters"]["original"])
    assert "/usr/bin/passwd" in surface["setuid"]["original"]
    assert "/usr/bin/ping" in surface["capabilities"]["original"]
    for category in surface.values():  # nginx runs none of them
        assert category["slimmed"] == [], category
        for path in category["original"]:
            assert not (nginx["slimmed"] / path.lstrip("/")).exists(), path
    run = slim_cli("report", "nginx.slim-report.json", cwd=nginx["directory"])
    assert "attack surface (original -> slimmed)" in run.stdout
    packages = nginx["report"]["packages"]
    assert f"OS packages     {packages['original']} -> {packages['kept']}" in run.stdout


# ---------------------------------------------------------------- the opt-out


def test_no_package_db_leaves_scanners_nothing_and_says_so(built, docker_client, tmp_path):
    report, tag = built("nginx", "--no-package-db")
    root = exported_root(docker_client, tag, tmp_path / "root")
    assert not (root / "var/lib/dpkg").exists() and not (root / "usr/share/doc").exists()
    assert not (root / str(SBOM_PATH).lstrip("/")).exists()
    assert report["packages"]["database"] == "removed"
    assert "scanners find no packages" in report["packages"]["note"]
    assert report["sbom"]["in_image"] is None
    run = subprocess.run([shutil.which("debsbom"), "generate", "-r", str(root), "-o", str(tmp_path / "bom")],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "var/lib/dpkg/status" in run.stderr
