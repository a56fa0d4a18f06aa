"""The pipeline's own pure logic (the stages are tested in their modules, the whole build in test_build)."""
from __future__ import annotations

from pathlib import PurePosixPath

from slim.model import Access, Lookup, RunOutcome, Seen, Trace, TracedPath, TraceHealth
from slim.pipeline import EarlyClosure

STARTUP = TracedPath(PurePosixPath("/etc/app.conf"), frozenset({Access.OPEN}), program="/app", phase="startup")
LATE = TracedPath(PurePosixPath("/var/cache/late"), frozenset({Access.OPEN}), program="/app", phase="after probes")
LOOKUP = Lookup(PurePosixPath("/etc/app.d"), follow=True, program="/app", phase="startup")
LATE_LOOKUP = Lookup(PurePosixPath("/var/cache/index"), follow=True, program="/app", phase="shutdown")


def trace_of(*paths: TracedPath, lookups: tuple[Lookup, ...] = ()) -> Trace:
    run = RunOutcome("server", None, running_after_probes=True, probes=())
    return Trace(paths=paths, health=TraceHealth(events=len(paths), overflow=False), run=run, lookups=lookups)


class Closures:
    """Stands in for compute_closure: says what it was computed from."""

    def __init__(self):
        self.inputs: list = []

    def __call__(self, seen):
        self.inputs.append(seen)
        return ("closure of", seen.paths, seen.lookups)


def test_the_closure_computed_when_the_probes_ended_is_the_closure_when_nothing_came_after():
    compute = Closures()
    early = EarlyClosure(compute)
    early.start(Seen((STARTUP,), (LOOKUP,)))
    try:
        assert early.closure(trace_of(STARTUP, lookups=(LOOKUP,))) == ("closure of", (STARTUP,), (LOOKUP,))
    finally:
        early.close()
    assert compute.inputs == [Seen((STARTUP,), (LOOKUP,))]  # computed once, on the thread


def test_a_path_or_a_lookup_seen_after_the_probes_has_the_closure_computed_again_from_the_whole_trace():
    for whole in (trace_of(STARTUP, LATE, lookups=(LOOKUP,)), trace_of(STARTUP, lookups=(LOOKUP, LATE_LOOKUP))):
        compute = Closures()
        early = EarlyClosure(compute)
        early.start(Seen((STARTUP,), (LOOKUP,)))
        try:
            assert early.closure(whole) == ("closure of", whole.paths, whole.lookups)
        finally:
            early.close()
        assert compute.inputs[-1] is whole


def test_without_probes_the_closure_is_computed_from_the_trace():
    compute = Closures()
    early = EarlyClosure(compute)
    whole = trace_of(STARTUP)
    assert early.closure(whole) == ("closure of", (STARTUP,), ())
    early.close()
    assert compute.inputs == [whole]
