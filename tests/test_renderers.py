"""The renderers, from a checked-in report of a real `slim build` of the demo nginx (no engine): every figure
they print is the report's own, formatted.

tests/data/nginx.slim-report.json is that build's report with its kept and removed lists cut to a few
entries (the renderers read the totals, never the lists).
"""
from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import jsonschema
from rich.console import Console

from slim.build.sizes import human_size
from slim.reporting.ci_gates import evaluate, gates_from_options
from slim.reporting.comparison import compare
from slim.reporting.render_html import render_html
from slim.reporting.render_report import gate_lines, render_markdown, render_text
from slim.reporting.render_summary import render_summary
from slim.reporting.report import Report

REPORT_PATH = Path(__file__).parent / "data" / "nginx.slim-report.json"
SHOWN_AS = Path("nginx.slim-report.json")  # as a user names it on the command line
SCHEMA = Path(__file__).parent.parent / "slim" / "schema" / "report.schema.json"
REPORT = Report.load(REPORT_PATH)
DATA = REPORT.to_json()
IMAGE = "slimtrace-fixture/nginx:9d53fb341b97"


def comparison(*gate_options):
    gates = [evaluate(gates_from_options(*gate_options), REPORT)] if gate_options else []
    return compare([(SHOWN_AS, REPORT)], gates)


def test_the_checked_in_report_is_a_report():
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(DATA)


def test_the_typed_report_reads_and_writes_the_json_unchanged():
    as_read = json.loads(REPORT_PATH.read_text())
    assert DATA == as_read and list(DATA) == list(as_read)
    assert REPORT.verification.comparisons[0].same and REPORT.kept[0].reasons[0].kind


def test_the_figures_shown_are_the_reports():
    assert (DATA["source"]["size"], DATA["result"]["size"], DATA["reduction_ratio"]) == (202830036, 11115589, 18.25)
    assert (human_size(DATA["source"]["size"]), human_size(DATA["result"]["size"])) == ("202.8 MB", "11.1 MB")
    assert (DATA["source"]["compressed_size"], DATA["result"]["compressed_size"]) == (82766989, 4579000)
    assert (DATA["source"]["files"], DATA["result"]["files"]) == (6723, 657)


def test_text():
    assert render_text(comparison()) == f"""\
IMAGE                                 ORIGINAL  SLIMMED   RATIO         COMPRESSED         FILES  VERIFICATION
{IMAGE}  202.8 MB  11.1 MB  18.25x  82.8 MB -> 4.6 MB  6,723 -> 657  passed (2 checks)

{IMAGE}
  uncompressed    202.8 MB -> 11.1 MB  (18.25x smaller)
  compressed      82.8 MB -> 4.6 MB  (18.08x smaller, gzip as a registry stores it; original estimated, slimmed measured)
  files           6,723 -> 657
  verification    passed (2 checks)
  slimmed image   slimtrace-demo/nginx:slim  sha256:48b01d97ba85
  report          nginx.slim-report.json

  DIRECTORY      KEPT   REMOVED
  /etc       255.6 KB  195.3 KB
  /root           0 B     732 B
  /usr        10.6 MB  188.5 MB
  /var        95.0 KB    5.0 MB

  largest removed files
    31.3 MB  /usr/lib/x86_64-linux-gnu/libicudata.so.72.1
     8.3 MB  /usr/lib/file/magic.mgc
     3.8 MB  /usr/bin/perl
     3.8 MB  /usr/bin/perl5.36.0
     3.3 MB  /usr/lib/x86_64-linux-gnu/libicui18n.so.72.1
     2.2 MB  /usr/lib/x86_64-linux-gnu/libdns-9.18.49-1~deb12u1-Debian.so
     2.2 MB  /usr/lib/x86_64-linux-gnu/libgnutls.so.30.34.3
     2.2 MB  /usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30
     2.1 MB  /usr/lib/x86_64-linux-gnu/libicuuc.so.72.1
     2.1 MB  /usr/lib/x86_64-linux-gnu/libapt-pkg.so.6.0.0

  attack surface (original -> slimmed)
  CATEGORY                   ORIGINAL  SLIMMED  STILL THERE
  package managers                  5        0  none
  shells                            3        0  none
  interpreters                      2        0  none
  compilers and build tools         0        0  none
  network tools                    11        0  none
  setuid or setgid programs        11        0  none
  files with capabilities           1        0  none
  OS packages     143 -> 12 (database entries of the kept packages, licenses kept)"""


def test_gate_lines():
    outcome = evaluate(gates_from_options(5, 10_000_000, True), REPORT)
    assert gate_lines(outcome) == [
        f"Gates for {IMAGE}:",
        "  PASS  fail-under-ratio: measured 18.25x smaller, threshold >= 5x",
        "  FAIL  max-size: measured 11,115,589 bytes (11.1 MB), threshold <= 10,000,000 bytes (10.0 MB)",
        "  PASS  require-verified: measured passed, threshold passed",
        "Result: FAIL [Total:3] [Passed:2] [Failed:1] [Skipped:0]",
    ]


def test_markdown():
    text = render_markdown(comparison(5, None, True))
    assert text.startswith("## slimtrace: 1 image\n")
    assert (f"| `{IMAGE}` | 202.8 MB | 11.1 MB | 18.25x | 82.8 MB → 4.6 MB | 6,723 → 657 | ✅ passed |"
            in text.splitlines())
    assert f"| `{IMAGE}` | `--fail-under-ratio` | ✅ PASS | 18.25x smaller | >= 5x |" in text.splitlines()
    assert f"| `{IMAGE}` | `--max-size` | ➖ SKIP | not set | — |" in text.splitlines()
    assert f"`{IMAGE}`: **Result: PASS [Total:3] [Passed:2] [Failed:0] [Skipped:1]**" in text.splitlines()
    assert "| `/usr` | 10.6 MB | 188.5 MB |" in text.splitlines()
    assert "| `/usr/lib/x86_64-linux-gnu/libicudata.so.72.1` | 31.3 MB |" in text.splitlines()
    assert "| network tools | 11 | 0 | none |" in text.splitlines()
    assert "OS packages: 143 → 12 (database entries of the kept packages, licenses kept)." in text.splitlines()


def test_html():
    html = render_html(comparison())
    for shown in ("202.8 MB", "11.1 MB", "18.25x", "82.8 MB", "4.6 MB", "6,723", "657", IMAGE,
                  "slimtrace-demo/nginx:slim", "/usr/lib/x86_64-linux-gnu/libicudata.so.72.1", "31.3 MB"):
        assert shown in html, shown


def test_build_summary():
    out = StringIO()
    render_summary(Console(file=out, width=120, color_system=None, highlight=False, soft_wrap=True), REPORT, SHOWN_AS)
    assert out.getvalue() == f"""\
{IMAGE}  202.8 MB -> 11.1 MB  (18.25x smaller; 6,723 -> 657 files)
slimmed image: slimtrace-demo/nginx:slim  sha256:48b01d97ba8587b57b22db50991fae5ae3c8b308268df4f33e13e390c27bdf06
verification: passed (2 checks, same behaviour as the original)
trace: 26 paths from 26 events, complete
packages: 143 -> 12 in the trimmed database; SBOM: nginx.slim-report.sbom.cdx.json
lookups: 15 paths from 40 calls (seccomp filter), 9 in the image (kept), 6 missing
report: nginx.slim-report.json
"""
