"""The pipeline's own pure logic (the stages are tested in their modules, the whole build in test_build)."""
from __future__ import annotations

import gc
import sys
import threading
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from slim.model import Access, Lookup, RunOutcome, Seen, Trace, TracedPath, TraceHealth
import pytest

from slim.errors import EngineUnreachable
from slim.pipeline import BuildOptions, EarlyBuild, build

STARTUP = TracedPath(PurePosixPath("/etc/app.conf"), frozenset({Access.OPEN}), program="/app", phase="startup")
LATE = TracedPath(PurePosixPath("/var/cache/late"), frozenset({Access.OPEN}), program="/app", phase="after probes")
LOOKUP = Lookup(PurePosixPath("/etc/app.d"), follow=True, program="/app", phase="startup")
LATE_LOOKUP = Lookup(PurePosixPath("/var/cache/index"), follow=True, program="/app", phase="shutdown")


def trace_of(*paths: TracedPath, lookups: tuple[Lookup, ...] = ()) -> Trace:
    run = RunOutcome("server", None, running_after_probes=True, probes=())
    return Trace(paths=paths, health=TraceHealth(events=len(paths), overflow=False), run=run, lookups=lookups)


class Closures:
    """Stands in for compute_closure: says what it was computed from (or only which paths, `by_paths`)."""

    def __init__(self, by_paths: bool = False):
        self.inputs: list = []
        self.by_paths = by_paths

    def __call__(self, seen):
        self.inputs.append(seen)
        return ("closure of", seen.paths) if self.by_paths else ("closure of", seen.paths, seen.lookups)


class Gzip:
    closed = False

    def close(self):
        self.closed = True


@dataclass
class Image:
    closure: object
    gzip: Gzip = field(default_factory=Gzip)


class Assembler:
    """Stands in for assembling and loading under the build's work tag: records what the tag holds."""

    def __init__(self, fail_first: bool = False):
        self.made: list[Image] = []
        self.threads: list[str] = []
        self.tag_holds: Image | None = None
        self.fail_first = fail_first
        self.called = threading.Event()

    def __call__(self, closure):
        self.called.set()
        self.threads.append(threading.current_thread().name)
        if self.fail_first and not self.made:
            self.made.append(None)
            raise OSError("the engine went away")
        image = Image(closure)
        self.made.append(image)
        self.tag_holds = image
        return image

    def discard(self):
        self.tag_holds = None


def early_build(closures, assembler) -> EarlyBuild:
    return EarlyBuild(closures, assembler, assembler.discard)


def test_what_was_made_when_the_probes_ended_is_the_closure_and_the_image_when_nothing_came_after():
    closures, assembler = Closures(), Assembler()
    early = early_build(closures, assembler)
    early.start(Seen((STARTUP,), (LOOKUP,)))
    try:
        closure = early.closure(trace_of(STARTUP, lookups=(LOOKUP,)))
        image = early.image(closure)
    finally:
        early.close()
    assert closure == ("closure of", (STARTUP,), (LOOKUP,))
    assert image.closure == closure and assembler.made == [image]  # made once, on the thread
    assert closures.inputs == [Seen((STARTUP,), (LOOKUP,))] and assembler.threads[0].startswith("slimtrace-early")
    assert assembler.tag_holds is image and not image.gzip.closed  # handed out: closing the build's part


def test_a_path_or_a_lookup_seen_after_the_probes_has_the_closure_and_the_image_made_again_from_the_whole_trace():
    for whole in (trace_of(STARTUP, LATE, lookups=(LOOKUP,)), trace_of(STARTUP, lookups=(LOOKUP, LATE_LOOKUP))):
        closures, assembler = Closures(), Assembler()
        early = early_build(closures, assembler)
        early.start(Seen((STARTUP,), (LOOKUP,)))
        try:
            closure = early.closure(whole)
            image = early.image(closure)
        finally:
            early.close()
        assert closure == ("closure of", whole.paths, whole.lookups) and closures.inputs[-1] is whole
        first, again = assembler.made
        assert image is again and image.closure == closure and assembler.tag_holds is again
        assert first.gzip.closed and not again.gzip.closed


def test_a_late_sighting_that_leaves_the_closure_as_it_was_keeps_the_early_image():
    closures, assembler = Closures(by_paths=True), Assembler()
    early = early_build(closures, assembler)
    early.start(Seen((STARTUP,), (LOOKUP,)))
    try:
        image = early.image(early.closure(trace_of(STARTUP, lookups=(LOOKUP, LATE_LOOKUP))))
    finally:
        early.close()
    assert len(closures.inputs) == 2 and assembler.made == [image] and assembler.tag_holds is image


def test_a_late_sighting_that_does_not_count_for_the_closure_keeps_the_early_closure_and_image():
    """A pid file written at shutdown, say: it leads to nothing in the image (`counted` leaves it out)."""
    closures, assembler = Closures(), Assembler()
    counted = lambda seen: Seen(tuple(p for p in seen.paths if p is not LATE), seen.lookups)  # noqa: E731
    early = EarlyBuild(closures, assembler, assembler.discard, counted)
    early.start(Seen((STARTUP,), (LOOKUP,)))
    try:
        image = early.image(early.closure(trace_of(STARTUP, LATE, lookups=(LOOKUP,))))
    finally:
        early.close()
    assert closures.inputs == [Seen((STARTUP,), (LOOKUP,))] and assembler.made == [image]
    assert assembler.tag_holds is image


def test_an_early_image_not_handed_out_is_let_go_of_when_the_build_ends():
    assembler = Assembler()
    early = early_build(Closures(), assembler)
    early.start(Seen((STARTUP,), ()))
    assert assembler.called.wait(10)
    early.close()  # waits for the assembly under way
    assert assembler.made[0].gzip.closed and assembler.tag_holds is None


def test_an_early_assembly_that_failed_is_done_again_on_the_build_s_own_thread():
    assembler = Assembler(fail_first=True)
    early = early_build(Closures(), assembler)
    early.start(Seen((STARTUP,), ()))
    try:
        image = early.image(early.closure(trace_of(STARTUP)))
    finally:
        early.close()
    assert assembler.made == [None, image] and assembler.tag_holds is image
    assert assembler.threads[1] == threading.main_thread().name


def test_without_probes_the_closure_and_the_image_are_made_from_the_trace():
    closures, assembler = Closures(), Assembler()
    early = early_build(closures, assembler)
    whole = trace_of(STARTUP)
    image = early.image(early.closure(whole))
    early.close()
    assert closures.inputs == [whole] and assembler.made == [image] and image.closure == ("closure of", (STARTUP,), ())


class UnreachableEngine:
    def host(self):
        raise EngineUnreachable("no engine here")


def test_a_build_gives_the_interpreter_s_settings_back_as_it_found_them():
    """The build switches threads more often while it runs (its main thread waits on the engine beside
    computing threads), and has the collector leave alone the objects that were there before it (frozen);
    a caller's interpreter is as it was afterwards, error or not."""
    before = sys.getswitchinterval()
    with pytest.raises(EngineUnreachable):
        build(UnreachableEngine(), tracer=None, options=BuildOptions(image="app:1"))
    assert sys.getswitchinterval() == before
    assert gc.get_freeze_count() == 0
