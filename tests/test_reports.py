"""Reports of a REAL build of the nginx fixture: the JSON schema, the HTML report in headless Chromium,
`slim explain`, and the gates of `slim report`. The build runs once for the module. The text, markdown and
summary renderings are checked figure by figure from a checked-in report, without an engine
(tests/test_renderers.py)."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import uuid
import zlib
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

import slim

SCHEMA = Path(slim.__file__).parent / "schema" / "report.schema.json"
REPORT_NAME = "nginx.slim-report.json"
SLIMMED_GREEN = (0x00, 0x9E, 0x73)  # render_html.SLIMMED_COLOUR
ORIGINAL_GREY = (0x9A, 0xA5, 0xB1)  # render_html.ORIGINAL_COLOUR

pytestmark = pytest.mark.engine


def slim_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    # Run in another directory, `python -m slim` must still be this checkout, not whatever is installed.
    checkout = {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run([sys.executable, "-m", "slim", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **checkout, **(env or {})}, timeout=600)


@pytest.fixture(scope="module")
def built(fixture_image, docker_client, tmp_path_factory):
    """(directory, report data) of one real `slim build` of the nginx fixture; the report is REPORT_NAME there."""
    directory = tmp_path_factory.mktemp("reports")
    tag = f"slimtrace-test/report-{uuid.uuid4().hex[:10]}:nginx"
    result = slim_cli("build", fixture_image("nginx"), "--tag", tag, "--report", REPORT_NAME, cwd=directory)
    try:
        assert result.returncode == 0, result.stderr
        yield directory, json.loads((directory / REPORT_NAME).read_text())
    finally:
        if docker_client.images.list(tag):
            docker_client.images.remove(tag, force=True)


def report_cli(built, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    directory, _ = built
    return slim_cli("report", REPORT_NAME, *args, cwd=directory, env={"GITHUB_STEP_SUMMARY": "", **(env or {})})


# ---------------------------------------------------------------- the JSON contract


def test_report_matches_its_schema(built):
    _, report = built
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(report)


def test_schema_rejects_what_is_not_a_report(built):
    _, report = built
    schema = json.loads(SCHEMA.read_text())
    broken = {**report, "result": {**report["result"], "size": "9 MB"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in report.items() if k != "removed_files"}, schema,
                            cls=jsonschema.Draft202012Validator)


def test_report_lists_every_removed_file_and_totals_add_up(built):
    _, report = built
    removed = dict(report["removed_files"])
    assert len(removed) == report["removed"]["files"]
    assert sum(removed.values()) == report["removed"]["bytes"]
    assert removed["/usr/bin/perl"] > 0
    kept_files = [k for k in report["kept"] if k["kind"] == "file"]
    assert report["kept_totals"]["bytes"] == sum(k["size"] for k in kept_files)
    assert sum(report["kept_totals"]["bytes_by_top_dir"].values()) == report["kept_totals"]["bytes"]
    assert report["source"]["compressed_size"] < report["source"]["layer_size"]
    assert report["result"]["compressed_size"] < report["source"]["compressed_size"]
    assert all("target" in k for k in report["kept"] if k["kind"] == "symlink")


# ---------------------------------------------------------------- gates and CI output


def test_gates_pass_and_fail_with_exit_code_7(built):
    passed = report_cli(built, "--fail-under-ratio", "5", "--max-size", "50MB", "--require-verified")
    assert passed.returncode == 0, passed.stderr
    assert re.search(r"PASS  max-size: measured [\d,]+ bytes \(.*\), threshold <= 50,000,000 bytes", passed.stdout)
    assert "Result: PASS [Total:3] [Passed:3] [Failed:0] [Skipped:0]" in passed.stdout

    failed = report_cli(built, "--max-size", "1MiB", "--fail-under-ratio", "1000")
    assert failed.returncode == 7, failed.stderr
    assert "FAIL  max-size" in failed.stdout and "FAIL  fail-under-ratio" in failed.stdout
    assert "SKIP  require-verified: not set" in failed.stdout
    assert "Result: FAIL [Total:3] [Passed:0] [Failed:2] [Skipped:1]" in failed.stdout
    assert [line for line in failed.stderr.splitlines() if line.startswith("Error:")] == [
        f"Error: 2 gates failed ({built[1]['source']['ref']}: fail-under-ratio; {built[1]['source']['ref']}: max-size)"
    ]


def test_json_output_carries_the_gates(built):
    result = report_cli(built, "--json", "--max-size", "1KB")
    assert result.returncode == 7
    data = json.loads(result.stdout)  # stdout stays pure JSON; the gate lines went to stderr
    assert data["images"][0]["slimmed"]["size"] == built[1]["result"]["size"]
    assert data["gates"][0]["result"] == "FAIL"
    assert "FAIL  max-size" in result.stderr


def test_step_summary_gets_the_markdown(built, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    result = report_cli(built, "--format", "json", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0, result.stderr
    text = summary.read_text()
    assert text.startswith("earlier step\n## slimtrace: 1 image\n")  # appended, as GitHub expects
    assert "| Image | Original | Slimmed |" in text


def test_several_reports_side_by_side(built, tmp_path):
    directory, report = built
    other = {**report, "source": {**report["source"], "ref": "example/other:2"}}
    (tmp_path / "other.json").write_text(json.dumps(other))
    result = slim_cli("report", str(directory / REPORT_NAME), str(tmp_path / "other.json"), "--json")
    assert result.returncode == 0, result.stderr
    assert [i["image"] for i in json.loads(result.stdout)["images"]] == [report["source"]["ref"], "example/other:2"]


# ---------------------------------------------------------------- HTML in a real browser


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/setup.sh installs it); CI must run the HTML test")
        pytest.skip("chromium is not installed (apt-get install chromium, or run scripts/setup.sh)")
    return found


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) bytes of an 8-bit non-interlaced PNG, as Chromium writes them."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, header = 8, b"", None
    while position < len(data):
        (length,), kind = struct.unpack(">I", data[position:position + 4]), data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up, corner = previous[x], previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r[i:i + 3]) for r in rows for i in range(0, stride, channels)]


def test_html_report_renders_in_headless_chromium(built, tmp_path):
    browser = chromium()
    directory, _ = built
    page = tmp_path / "report.html"
    result = report_cli(built, "--format", "html", "-o", str(page), "--require-verified")
    assert result.returncode == 0, result.stderr
    html = page.read_text()
    # Self-contained: no script, nothing fetched from anywhere (src/href/url()), a CSP that forbids fetching.
    assert "<script" not in html.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"url\(", html, re.I)
    assert not re.search(r"https?://", html)
    assert "default-src 'none'" in html
    # The two charts, with a bar per image and size.
    assert html.count('<svg class="chart"') == 2
    assert 'class="bar original"' in html and 'class="bar slimmed"' in html and 'class="segment"' in html

    screenshot = tmp_path / "report.png"
    profile = tmp_path / "profile"
    run = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--screenshot={screenshot}", "--window-size=1200,900",
         "--enable-logging=stderr", "--v=0", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    width, height, pixels = png_pixels(screenshot)
    assert (width, height) == (1200, 900)
    colours = set(pixels)
    assert len(colours) > 50, "the screenshot is (nearly) blank"
    # The bars of the size chart are on the page, drawn in their colours.
    assert bytes(SLIMMED_GREEN) in colours and bytes(ORIGINAL_GREY) in colours


class _TableRows(HTMLParser):
    """The cell texts of each row of the tables with a given class, as a browser's DOM holds them."""

    def __init__(self, table_class: str):
        super().__init__()
        self.table_class, self.inside, self.rows, self.cell = table_class, False, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("class") == self.table_class:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def test_html_attack_surface_in_headless_chromium(built, tmp_path):
    """The attack-surface comparison as Chromium lays the page out (its DOM after parsing), row by row
    the report's categories: what the original had, what the slimmed image keeps."""
    browser = chromium()
    _, report = built
    page = tmp_path / "report.html"
    assert report_cli(built, "--format", "html", "-o", str(page)).returncode == 0
    run = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    table = _TableRows("surface")
    table.feed(run.stdout)
    assert table.rows[0] == ["Attack surface", "Original", "Slimmed", "Still there"]
    expected = [[c["label"], str(len(c["original"])), str(len(c["slimmed"]))] for c in report["attack_surface"]]
    assert [row[:3] for row in table.rows[1:]] == expected
    assert any(row[0] == "network tools" and int(row[1]) > 0 and row[2] == "0" for row in table.rows[1:])
    packages = report["packages"]
    assert f"OS packages: {packages['original']} → {packages['kept']}" in run.stdout


# ---------------------------------------------------------------- slim explain


def explain(built, path: str, *args: str) -> subprocess.CompletedProcess:
    directory, _ = built
    return slim_cli("explain", REPORT_NAME, path, *args, cwd=directory)


def test_explain_a_traced_file(built):
    result = explain(built, "/var/www/html/index.html")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [
        "/var/www/html/index.html: kept (file, 382 B)",
        "  - traced: opened by /usr/sbin/nginx during http :80",
    ]


def test_explain_a_library_follows_the_chain_to_the_program(built):
    result = explain(built, "/usr/lib/x86_64-linux-gnu/libssl.so.3", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "kept"
    needed = next(r for r in data["reasons"] if r["kind"] == "elf-needed")
    assert needed["source"] == "/usr/sbin/nginx"
    # ... and /usr/sbin/nginx is kept because the run executed it: the root of the chain.
    assert [(s["path"], s["kind"]) for s in needed["chain"]] == [("/usr/sbin/nginx", "traced")]
    text = explain(built, "/usr/lib/x86_64-linux-gnu/libssl.so.3").stdout
    assert "  - library needed by /usr/sbin/nginx\n      /usr/sbin/nginx: traced: executed" in text


def test_explain_a_symlink(built):
    result = explain(built, "/usr/lib/x86_64-linux-gnu/libz.so.1", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["kind"], data["target"]) == ("symlink", "libz.so.1.2.13")
    assert data["reasons"][0]["kind"] == "symlink"
    assert data["reasons"][0]["source"] == "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
    assert data["reasons"][0]["chain"][0]["kind"] == "traced"
    assert data["leads_to"]["path"] == "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"


def test_explain_a_path_spelled_through_a_symlink(built):
    result = explain(built, "/lib/x86_64-linux-gnu/libc.so.6")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "/lib/x86_64-linux-gnu/libc.so.6 is /usr/lib/x86_64-linux-gnu/libc.so.6 (through /lib -> usr/lib)"
    assert lines[1].startswith("/usr/lib/x86_64-linux-gnu/libc.so.6: kept (file, ")


def test_explain_a_removed_file(built):
    _, report = built
    size = dict(report["removed_files"])["/usr/bin/perl"]
    result = explain(built, "/usr/bin/perl", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["status"], data["kind"], data["size"], data["reasons"]) == ("removed", "file", size, [])
    text = explain(built, "/usr/bin/perl").stdout
    assert "never opened or executed during the traced run" in text


def test_explain_a_removed_directory(built):
    _, report = built
    below = [size for path, size in report["removed_files"] if path.startswith("/usr/share/perl5/")]
    data = json.loads(explain(built, "/usr/share/perl5", "--json").stdout)
    assert data["status"] == "removed" and data["kind"] == "dir"
    assert data["removed_below"] == {"files": len(below), "bytes": sum(below)}


def test_explain_a_path_not_in_the_image_is_a_usage_error(built):
    result = explain(built, "/no/such/file")
    assert result.returncode == 2
    assert "not in the image" in result.stderr and "Traceback" not in result.stderr
