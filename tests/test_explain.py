"""`slim explain` over a hand-written report: chains of reasons, symlinks, removed and excluded paths."""
from __future__ import annotations

from pathlib import PurePosixPath as P

import pytest

from slim.reporting.explanation import NotInImage, explain
from slim.reporting.render_explain import render_explanation
from slim.reporting.report import Report


def kept(path, kind="file", size=0, *reasons, target=None):
    item = {"path": path, "kind": kind, "size": size,
            "reasons": [{"kind": k, "source": s, "detail": d} for k, s, d in reasons]}
    if target is not None:
        item["target"] = target
    return item


REPORT = Report.from_json({
    "source": {"ref": "example/app:1", "id": "sha256:1", "size": 10_000, "files": 20},
    "result": {"id": "sha256:2", "size": 9_000, "files": 10},
    "verification": {"status": "passed"},
    "removed": {"files": 4, "bytes": 3_800_564},
    "kept": [
        kept("/", "dir", 0, ("parent-directory", "/app/server", "")),
        kept("/app", "dir", 0, ("parent-directory", "/app/server", "")),
        kept("/app/server", "file", 5000, ("traced", "/app/server", "exec|open during startup"),
             ("entrypoint", "server", "")),
        kept("/lib", "symlink", 0, ("symlink", "/usr/lib/libc.so.6", ""), target="usr/lib"),
        kept("/usr", "dir", 0, ("parent-directory", "/usr/lib/libc.so.6", "")),
        kept("/usr/lib", "dir", 0, ("parent-directory", "/usr/lib/libc.so.6", "")),
        # Never opened during the run: only the loader's rules keep these.
        kept("/usr/lib/libcrypto.so.3", "file", 4000, ("elf-needed", "/app/server", "")),
        kept("/usr/lib/libc.so.6", "file", 2000, ("elf-needed", "/usr/lib/libcrypto.so.3", ""),
             ("elf-needed", "/app/server", "")),
        kept("/usr/lib/libc.so", "symlink", 0, ("symlink", "/usr/lib/libc.so.6", ""), target="libc.so.6"),
        kept("/etc", "dir", 0, ("parent-directory", "/etc/passwd", "")),
        kept("/etc/passwd", "file", 800, ("always-kept", "", "")),
        kept("/srv", "dir", 0, ("include-path", "", "")),
        kept("/srv/data.db", "file", 10, ("include-path", "", "")),
        kept("/cycle-a", "file", 1, ("hard-link", "/cycle-b", "")),
        kept("/cycle-b", "file", 1, ("hard-link", "/cycle-a", "")),
    ],
    "removed_files": [["/usr/share/doc/a/changelog", 300], ["/usr/share/doc/b/README", 200],
                      ["/usr/bin/perl", 3_800_000], ["/opt/secret/key", 64]],
    "removed_symlinks": [["/usr/bin/perl5", "perl"], ["/opt/current", "secret"]],
    "options": {"include_paths": ["/srv"], "exclude_paths": ["/opt/secret"], "no_rules": [], "app_files": "all",
                "package_db": True},
})


def test_chain_through_libraries_ends_at_what_the_run_did():
    e = explain(REPORT, P("/usr/lib/libc.so.6"))
    assert e.status == "kept" and e.size == 2000
    first, second = e.reasons
    assert [(s.path, s.reason.kind) for s in first.chain] == [
        ("/usr/lib/libcrypto.so.3", "elf-needed"),
        ("/app/server", "traced"),  # a root: the chain stops at the first root reason it finds
    ]
    assert [(s.path, s.reason.kind) for s in second.chain] == [("/app/server", "traced")]
    assert render_explanation(e).splitlines() == [
        "/usr/lib/libc.so.6: kept (file, 2.0 KB)",
        "  - library needed by /usr/lib/libcrypto.so.3",
        "      /usr/lib/libcrypto.so.3: library needed by /app/server",
        "          /app/server: traced: executed and opened by /app/server during startup",
        "  - library needed by /app/server",
        "      /app/server: traced: executed and opened by /app/server during startup",
    ]


def test_a_rule_is_a_root():
    e = explain(REPORT, P("/etc/passwd"))
    assert [(r.reason.kind, r.chain) for r in e.reasons] == [("always-kept", ())]


def test_an_include_rule_names_its_option():
    e = explain(REPORT, P("/srv/data.db"))
    assert [(r.reason.kind, r.reason.source, r.chain) for r in e.reasons] == [("include-path", "/srv", ())]
    assert "  - kept by --include-path /srv" in render_explanation(e)


def test_a_cycle_of_reasons_terminates():
    e = explain(REPORT, P("/cycle-a"))
    assert [s.path for s in e.reasons[0].chain] == ["/cycle-b"]


def test_symlink_and_what_it_leads_to():
    e = explain(REPORT, P("/usr/lib/libc.so"))
    assert (e.kind, e.target, e.reasons[0].reason.kind) == ("symlink", "libc.so.6", "symlink")
    assert e.leads_to is not None and e.leads_to.path == "/usr/lib/libc.so.6"


def test_a_path_spelled_through_a_kept_symlink():
    e = explain(REPORT, P("/lib/libcrypto.so.3"))
    assert (e.path, e.via, e.status) == ("/usr/lib/libcrypto.so.3", (("/lib", "usr/lib", True),), "kept")
    assert e.notes == ()


def test_a_path_spelled_through_a_removed_symlink_says_so():
    e = explain(REPORT, P("/usr/bin/perl5"))
    assert (e.status, e.kind, e.target) == ("removed", "symlink", "perl")
    assert e.leads_to is not None and (e.leads_to.path, e.leads_to.size) == ("/usr/bin/perl", 3_800_000)
    through = explain(REPORT, P("/opt/current/key"))
    assert through.path == "/opt/secret/key" and "/opt/current is not in the slimmed image" in through.notes[0]


def test_removed_file_and_directory():
    e = explain(REPORT, P("/usr/bin/perl"))
    assert (e.status, e.size, e.reasons) == ("removed", 3_800_000, ())
    assert "never opened or executed" in render_explanation(e)
    doc = explain(REPORT, P("/usr/share/doc"))
    assert (doc.status, doc.kind, doc.removed_below) == ("removed", "dir", (2, 500))


def test_excluded_path():
    e = explain(REPORT, P("/opt/secret/key"))
    assert (e.status, e.excluded_by) == ("excluded", "/opt/secret")
    assert "removed by --exclude-path /opt/secret" in render_explanation(e)


def test_a_kept_directory_tells_what_went_below_it():
    e = explain(REPORT, P("/usr"))
    assert e.status == "kept" and e.removed_below == (3, 3_800_000 + 500)


def test_unknown_path():
    with pytest.raises(NotInImage):
        explain(REPORT, P("/nowhere"))
