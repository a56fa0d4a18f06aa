"""Parsing shared with a second process (slim/static_analysis/parallel.py), run for real: the scan cache's
worker process on real Python sources."""
from __future__ import annotations

import subprocess
import sysconfig
import time
from pathlib import Path

import pytest

from slim.static_analysis import parallel
from slim.static_analysis.parallel import SHARED_FROM, from_both_ends
from slim.static_analysis.scancache import WORKER, ScanCache, parsed
from slim.static_analysis.pyscan import scan_imports

# Real modules: the standard library of the Python running the tests.
SOURCES = [(path.read_bytes(), False) for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:SHARED_FROM * 2]]


@pytest.fixture
def workers(monkeypatch) -> list[subprocess.Popen]:
    started: list[subprocess.Popen] = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(parallel.subprocess, "Popen", Recorded)
    return started


def test_a_long_list_is_shared_with_the_worker_and_gives_what_parsing_each_here_gives(workers):
    done_here = []

    def slowly_here(item):  # this side slower than the worker: it certainly takes a share
        done_here.append(item)
        time.sleep(0.05)
        return parsed(item)

    assert len(SOURCES) >= SHARED_FROM
    assert from_both_ends(SOURCES, slowly_here, WORKER) == [parsed(item) for item in SOURCES]
    assert 0 < len(done_here) < len(SOURCES)
    assert len(workers) == 1 and workers[0].poll() is not None  # ended when the list was done


def test_a_short_list_starts_no_process(workers):
    assert from_both_ends(SOURCES[:3], parsed, WORKER) == [parsed(item) for item in SOURCES[:3]]
    assert workers == []


def test_a_worker_that_fails_leaves_its_share_to_this_side(workers):
    assert from_both_ends(SOURCES, parsed, "slim.no_such_worker") == [parsed(item) for item in SOURCES]
    assert workers[0].poll() is not None


def test_a_worker_that_cannot_start_leaves_everything_to_this_side(monkeypatch):
    def no_process(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(parallel.subprocess, "Popen", no_process)
    assert from_both_ends(SOURCES, parsed, WORKER) == [parsed(item) for item in SOURCES]


def test_the_scan_cache_reads_back_what_the_worker_parsed(tmp_path):
    first_build = ScanCache(tmp_path).scan_many(SOURCES)
    assert first_build == [scan_imports(source, main) for source, main in SOURCES]
    assert ScanCache(tmp_path).scan_many(SOURCES) == first_build


def test_an_interrupt_while_shared_ends_the_worker_too(workers):
    """Ctrl-C reaches this side as KeyboardInterrupt (the worker ignores SIGINT: it is ended from here)."""
    def interrupted(item):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        from_both_ends(SOURCES, interrupted, WORKER)
    assert len(workers) == 1 and workers[0].poll() is not None
