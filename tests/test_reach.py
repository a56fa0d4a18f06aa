"""The readers behind the issue-10 rules: shell scripts, program calls, manifests, Python imports.

Pure logic, read from real files where they exist (the reachapp fixture, Debian's own shell scripts and
the standard library on this host, an installed distribution's METADATA) and from small snippets for the
constructs a real file would not show all at once.
"""
from __future__ import annotations

import difflib
import importlib.metadata
import inspect
from pathlib import Path

import pytest

from slim.static_analysis.manifests import (
    gemfile_lock_gems,
    lock_installed,
    node_manifest,
    python_environment,
    requirement_lines,
    requires_dist,
    requires_txt,
)
from slim.static_analysis.programs import first_word, language_of, programs_in
from slim.static_analysis.pyimports import codec_module
from slim.static_analysis.pyscan import scan_imports
from slim.static_analysis.jsrequires import is_builtin, package_name, scan_js
from slim.static_analysis.rbrequires import scan_requires
from slim.static_analysis.shellscripts import is_shell_script, scan_script

REACHAPP = Path(__file__).parent.parent / "fixtures" / "images" / "reachapp"
PY311 = python_environment("3.11")


# ---------------------------------------------------------------- shell scripts


def test_every_branch_of_the_fixture_entrypoint_is_read():
    source = (REACHAPP / "entrypoint.sh").read_bytes()
    assert is_shell_script(source)
    found = scan_script(source)
    assert [(c.text, c.line) for c in found.commands] == [("gzip", 5), ("tr", 8), ("sort", 8)]
    assert found.unresolved == ()  # `exec "$@"` runs the container's command: nothing to report


def test_case_functions_wrappers_and_tests():
    found = scan_script(b"""#!/bin/bash
log() { printf '%s\\n' "$*" >&2; }
. /usr/local/lib/helpers.sh
case "$1" in
  serve) set -- gunicorn app:app "$@" ;;
  migrate) exec gosu app /usr/local/bin/migrate --all ;;
esac
if [ ! -f /usr/share/app/schema.sql ] || [[ -x "$HOOK" ]]; then log missing; fi
test -d /var/lib/app || mkdir -p /var/lib/app
out=$(date +%s | sha256sum)
$RUNNER --version
exec "$@"
""")
    assert [c.text for c in found.commands] == ["gunicorn", "gosu", "/usr/local/bin/migrate", "mkdir", "date",
                                                 "sha256sum"]
    assert [(t.text, t.line) for t in found.tested] == [("/usr/share/app/schema.sql", 8), ("/var/lib/app", 9)]
    assert [(s.text, s.line) for s in found.sourced] == [("/usr/local/lib/helpers.sh", 3)]
    assert [(u.text, u.line) for u in found.unresolved] == [("$RUNNER", 11)]


@pytest.mark.skipif(not Path("/usr/bin/zgrep").is_file(), reason="Debian's gzip scripts are not installed")
def test_debian_shell_scripts_parse():
    assert [c.text for c in scan_script(Path("/usr/bin/gunzip").read_bytes()).commands] == ["gzip"]
    zgrep = scan_script(Path("/usr/bin/zgrep").read_bytes())
    assert {"gzip", "sed", "expr", "mktemp"} <= {c.text for c in zgrep.commands}
    assert all(not c.text.startswith("-") and c.text not in ("do", "done") for c in zgrep.commands)


# ---------------------------------------------------------------- programs named in code


def test_the_fixture_app_runs_zip():
    source = (REACHAPP / "app" / "app.py").read_bytes()
    assert language_of("app.py", source) == "python"
    assert [(c.program, c.line) for c in programs_in("python", source)] == [("zip", 30)]


def test_program_calls_in_each_language():
    python = b"""import os, shutil, subprocess
from subprocess import check_output as run_it
def export(tool):
    subprocess.run(["zip", "-r", "-", "."], check=True)
    os.system("tar czf /tmp/x.tgz /data")
    run_it("git rev-parse HEAD", shell=True)
    shutil.which("convert")
    subprocess.Popen([tool, "-v"])
    app.run()
"""
    assert [(c.program, c.line) for c in programs_in("python", python)] == [
        ("zip", 4), ("tar", 5), ("git", 6), ("convert", 7), (None, 8)]
    javascript = b"""const { execFile } = require("node:child_process");
const cp = require("child_process");
app.get("/x", (req, res) => execFile("zip", ["-r", "-", "."], () => {}));
cp.execSync("pg_dump -U app");
cp.exec(`tar czf - ${dir}`);
"""
    assert sorted((c.program or "", c.line) for c in programs_in("javascript", javascript)) == [
        ("", 5), ("pg_dump", 4), ("zip", 3)]
    assert [c.program for c in programs_in("ruby", b"out = `zip -r a b`\nsystem('convert', 'a')\n")] == ["zip", "convert"]
    assert [c.program for c in programs_in("php", b"<?php $o = shell_exec('zip -r a b');")] == ["zip"]
    assert first_word("LC_ALL=C sort -u") == "sort" and first_word("$(which zip)") is None


# ---------------------------------------------------------------- manifests


def test_requires_dist_of_an_installed_distribution_without_extras_or_other_platforms():
    metadata = Path(importlib.metadata.distribution("docker")._path) / "METADATA"
    required = requires_dist(metadata.read_bytes(), PY311)
    assert {"requests", "urllib3"} <= set(required)
    assert not {"pywin32", "paramiko", "pytest", "sphinx"} & set(required)


def test_egg_info_requirements_and_requirements_files():
    text = b"click>=8.0\nitsdangerous\n\n[:python_version < '3.10']\nimportlib-metadata\n\n[async]\nasgiref\n"
    assert requires_txt(text, PY311) == ["click", "itsdangerous"]
    assert requirement_lines(b"-r base.txt\nFlask==2.2 # web\nuvloop; sys_platform == 'win32'\n", PY311) == ["flask"]


def test_node_manifests_never_take_dev_dependencies():
    required, optional, workspaces = node_manifest(
        b'{"dependencies": {"express": "^4", "@scope/util": "1"}, "optionalDependencies": {"fsevents": "*"},'
        b' "devDependencies": {"jest": "*"}, "workspaces": ["packages/*"]}')
    assert (required, optional, workspaces) == (["@scope/util", "express"], ["fsevents"], ["packages/*"])
    lock = (b'{"packages": {"": {}, "node_modules/express": {}, "node_modules/jest": {"dev": true},'
            b' "node_modules/a/node_modules/b": {}}}')
    assert lock_installed(lock) == ["node_modules/a/node_modules/b", "node_modules/express"]
    assert gemfile_lock_gems(b"GEM\n  specs:\n    rack (3.0.8)\n      base64\n    puma (6.4.0)\n") == [
        ("puma", "6.4.0"), ("rack", "3.0.8")]


# ---------------------------------------------------------------- Python imports


def test_imports_at_any_depth_but_not_code_an_imported_module_never_runs():
    found = scan_imports(inspect.getsource(difflib).encode())
    names = {name.name for name in found.names}
    assert "heapq" in names  # `from heapq import nlargest` at the top
    assert "doctest" not in names  # only in `_test()`, which only the `__main__` block calls
    app = scan_imports((REACHAPP / "app" / "app.py").read_bytes(), main=True)
    assert {(n.name, n.line) for n in app.names} >= {("difflib", 51), ("csv", 58), ("flask", 16)}


def test_branches_for_other_platforms_are_not_followed():
    source = b"""
import sys, os
if sys.platform == "win32":
    import winreg
elif sys.platform.startswith(("darwin", "freebsd")):
    import _scproxy
else:
    import fcntl
if os.name != "nt" and not sys.platform.startswith("linux"):
    import never
if sys.platform == "win32" or feature:
    import maybe
"""
    names = {name.name for name in scan_imports(source).names}
    assert names == {"sys", "os", "fcntl", "maybe"}


def test_an_import_error_fallback_names_the_imports_it_stands_in_for():
    source = b"""
try:
    from _decimal import *
except ImportError:
    from _pydecimal import *
try:
    import json
except Exception:
    import simplejson
"""
    found = {name.name: name for name in scan_imports(source).names}
    assert [tried.name for tried in found["_pydecimal"].fallback_for] == ["_decimal"]
    assert found["simplejson"].fallback_for == ()  # a broad handler also runs when json itself fails


def test_ruby_requires_with_literal_names_and_computed_ones():
    source = b"""require "socket"
require_relative 'lib/greeting'
autoload :Set, "set"
def require(path)  # rubygems' own Kernel#require, not a call
  begin; require "json" rescue LoadError; end if path
end
=begin
require "documented_only"
=end
# require "commented_out"
require "rubygems/defaults/#{RUBY_ENGINE}"
require name
"""
    found = scan_requires(source)
    assert [(r.name, r.line, r.relative) for r in found.requires] == [
        ("socket", 1, False), ("lib/greeting", 2, True), ("set", 3, False), ("json", 5, False)]
    assert found.dynamic_lines == (11, 12)


def test_javascript_requires_and_imports_with_literal_names():
    source = b"""import express, { Router } from "express";
import "./polyfill.js";
import {
  a,
} from "@scope/pkg/sub";
export * from './lib';
const fs = require("node:fs");
/* require("in_a_comment") */
app.get("/x", async () => { const m = await import("lazy"); require(name); });
"""
    found = scan_js(source)
    assert found.specifiers == (("express", 1), ("./polyfill.js", 2), ("@scope/pkg/sub", 5), ("./lib", 6),
                                ("node:fs", 7), ("lazy", 9))
    assert found.dynamic_lines == (9,)
    assert [package_name(s) for s, _ in found.specifiers] == ["express", None, "@scope/pkg", None, "node:fs", "lazy"]
    assert is_builtin("node:fs") and is_builtin("fs/promises") and not is_builtin("express")


def test_codec_names_are_normalised_as_the_codec_registry_does():
    aliases = {"latin1": "latin_1", "utf8": "utf_8"}
    assert codec_module(aliases, "UTF-8") == "utf_8" and codec_module(aliases, "latin1") == "latin_1"
    assert codec_module(aliases, "ISO-8859-15") == "iso_8859_15"


CACHED_MODULE = b'''
import os, json as j
from . import sibling
try:
    import _speedups
except ImportError:
    from .slow import speedups
def later():
    importlib.import_module(name)
    return "utf-8".encode("latin-1")
'''


def test_scans_are_cached_by_source_and_read_back_as_scanned(tmp_path, monkeypatch):
    """A module scanned by an earlier build is read from the cache, equal to scanning it again; a file that
    is no Python 3 is remembered as such."""
    from slim.static_analysis import scancache
    from slim.static_analysis.scancache import ScanCache

    fresh = scan_imports(CACHED_MODULE)
    assert fresh.names and fresh.dynamic_lines and fresh.words and any(n.fallback_for for n in fresh.names)
    assert ScanCache(tmp_path).scan(CACHED_MODULE) == fresh
    assert ScanCache(tmp_path).scan(b"print 'python 2'") is None

    def never(source, main=False):
        raise AssertionError("parsed again")

    monkeypatch.setattr(scancache, "scan_imports", never)
    later_build = ScanCache(tmp_path)
    assert later_build.scan(CACHED_MODULE) == fresh
    assert later_build.scan(b"print 'python 2'") is None
    with pytest.raises(AssertionError, match="parsed again"):  # run as __main__ it is another scan
        later_build.scan(CACHED_MODULE, main=True)


@pytest.mark.parametrize("damage", ["not a directory", "not a database"])
def test_a_cache_that_cannot_be_used_only_means_parsing_again(tmp_path, damage):
    from slim.static_analysis.scancache import CACHE_NAME, ScanCache

    if damage == "not a directory":
        directory = tmp_path / "file"
        directory.write_text("")
    else:
        directory = tmp_path
        (directory / CACHE_NAME).write_bytes(b"\xff" * 4096)
    assert ScanCache(directory).scan(CACHED_MODULE) == scan_imports(CACHED_MODULE)


@pytest.mark.parametrize("row", ['{"names": []}', "[[], 3]", '"abc"', "[[[1, 2]], [], []]", "not json"])
def test_a_damaged_row_is_scanned_again_and_stored_right(tmp_path, row):
    import sqlite3

    from slim.static_analysis.scancache import CACHE_NAME, ScanCache

    ScanCache(tmp_path).scan(CACHED_MODULE)
    with sqlite3.connect(tmp_path / CACHE_NAME) as db:
        db.execute("UPDATE scans SET found = ?", (row,))
    assert ScanCache(tmp_path).scan(CACHED_MODULE) == scan_imports(CACHED_MODULE)
    with sqlite3.connect(tmp_path / CACHE_NAME) as db:
        assert db.execute("SELECT found FROM scans").fetchone()[0] != row
