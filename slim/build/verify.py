"""Prove the slimmed image behaves like the original.

Two kinds of evidence:
- static invariants of the slimmed image, checked before it runs (the run settings of its config, and
  entrypoint, symlinks, libraries, user of its filesystem), read back from the image the engine loaded;
- the same probes run against the slimmed image, each outcome compared with the original's.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
from pathlib import PurePosixPath
from typing import Any, Callable, Iterator, Mapping

from . import volatility
from .closure import ClosureOptions, compute_closure
from slim.rules.table import RULE_NAMES
from slim.engine import ContainerSpec, Engine
from slim.errors import ContainerStartFailed
from .exercise import AFTER_PROBES, BATCH_RUN, QUIET, ExercisePlan, exercise
from slim.model import (
    CONFIG_READ_LIMIT,
    Access,
    EntryKind,
    ImageFacts,
    ProbeComparison,
    ProbeOutcome,
    RunOutcome,
    Seen,
    Trace,
    TracedPath,
    Verification,
)
from slim.ownership import owned_container, start_owned
from probes.http import NOT_HTTP, HttpProbe
from slim.image.rootfs import RootFS


def verify(
    engine: Engine,
    facts: ImageFacts,
    slimmed: ImageFacts,
    slimmed_root: Callable[[], RootFS],
    spec: ContainerSpec,
    plan: ExercisePlan,
    original: RunOutcome,
    original_root: RootFS,
    lingering: Callable[[], None] = lambda: None,
) -> Verification:
    """Check `slimmed` (its facts and filesystem, `slimmed_root()`) against the original, then run it as
    `spec` says (with `spec.image` replaced) under `plan` and compare with `original`, the outcome of the
    original image under the same spec and probes. `lingering()` is called when the probes are done and the
    run is only left running (a server's), the time a caller has the CPU to itself."""
    # Indexing and checking the filesystem is CPU, the run mostly waits on the container: one goes on while the
    # other waits (the slimmed container starts meanwhile, not after the index).
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="slimtrace-check") as checker:
        checked = checker.submit(lambda: check_filesystem(slimmed_root(), facts, original_root))
        run = run_exercised(engine, dataclasses.replace(spec, image=slimmed.id), plan_like(plan, original), lingering)
        failures = config_problems(facts, slimmed) + checked.result()
    return Verification(invariant_failures=tuple(failures), comparisons=compare_runs(original, run))


def plan_like(plan: ExercisePlan, original: RunOutcome) -> ExercisePlan:
    """The plan of a run compared with `original`: probed once, and only once it listens on every socket
    the original listened on (a backend on the loopback behind a proxy as much as the published port).

    A port the original showed to listen without speaking HTTP is asked in plain HTTP only: the original's
    run already waited out the TLS attempt there (3 s on a server that waits silently for more, like redis),
    and a plain request tells the slimmed image's "listening, not HTTP" from any other answer all the same.

    After its probes the run is left running as long as the original was, QUIET seconds at least: the traced
    original ran on until its trace had seen nothing new for QUIET seconds, so the slimmed image gets the
    time in which the original still opened files to fail in. An original that exited meanwhile sets no
    bound: the slimmed image may take longer to exit the same way.
    """
    not_http = {outcome.probe for outcome in original.probes if outcome.fingerprint == NOT_HTTP}
    probes = tuple(
        dataclasses.replace(probe, tls=False)
        if isinstance(probe, HttpProbe) and probe.tls is None and probe.name in not_http else probe
        for probe in plan.probes
    )
    linger = min(plan.linger, max(QUIET, original.lingered)) if original.running_after_probes else plan.linger
    return dataclasses.replace(plan, passes=1, sockets=original.listening, probes=probes, linger=linger)


# The config keys that decide how a container of the image runs: the slimmed image must keep them all.
RUN_CONFIG_KEYS = (
    "Entrypoint", "Cmd", "Env", "WorkingDir", "User", "ExposedPorts", "Volumes", "StopSignal", "Healthcheck", "Shell",
)


def config_problems(original: ImageFacts, slimmed: ImageFacts) -> list[str]:
    """One line per run setting of the image config that differs (empty and absent count as equal)."""
    return [
        f"config {key}: {slimmed.config.get(key)!r}, the original has {original.config.get(key)!r}"
        for key in RUN_CONFIG_KEYS
        if (original.config.get(key) or None) != (slimmed.config.get(key) or None)
    ]


MISSING_LIMIT = 50  # hints reported at most


def likely_missing(original: Trace, slimmed: Trace, original_root: RootFS, slimmed_root: RootFS) -> tuple[str, ...]:
    """Files of the original image its traced run opened, that the slimmed run did not open and that the
    slimmed image lacks: the likely cause of a divergence. (fanotify reports only opens that succeed, so
    the slimmed run's failed opens cannot be seen directly.)"""
    opened = {traced.path for traced in slimmed.paths}
    missing = (
        traced.path
        for traced in original.paths
        if traced.path not in opened
        and original_root.resolve(traced.path).exists
        and not slimmed_root.resolve(traced.path).exists
    )
    return tuple(str(path) for path in missing)[:MISSING_LIMIT]


def check_filesystem(root: RootFS, facts: ImageFacts, original: RootFS | None = None) -> list[str]:
    """Static invariants of a (slimmed) filesystem, one line per problem.

    The closure's own rules are the checker: asked to keep *every* file of the slimmed image, it warns
    about an entrypoint, a #! interpreter or a DT_NEEDED library that does not resolve in it. With the
    `original` filesystem, problems the original has too (a plugin with an optional library) are not ours.
    """
    files = tuple(entry.path for entry in root.entries.values() if entry.kind is EntryKind.FILE)
    links = tuple(entry for entry in root.entries.values() if entry.kind is EntryKind.SYMLINK)
    problems = _problems(root, facts, files, links)
    if original is not None:
        known = set(_problems(original, facts, files, links))
        problems = [problem for problem in problems if problem not in known]
    return problems + _user_problems(root, facts.user)


def _problems(root: RootFS, facts: ImageFacts, files: tuple[PurePosixPath, ...], links) -> list[str]:
    traced = tuple(TracedPath(path, frozenset({Access.OPEN}), program="", phase="verify") for path in files)
    everything = Seen(paths=traced)
    # Only resolution is checked: the keep-more rules would add nothing to "every file" but time.
    checking = ClosureOptions(always_keep=(), disabled_rules=frozenset(RULE_NAMES), app_files="none", package_db=False)
    problems = list(compute_closure(everything, root, facts, checking).warnings)
    return problems + [
        f"symlink {link.path} -> {link.link_target} leads nowhere"
        for link in links
        if not root.resolve(link.path).exists
    ]


def _user_problems(root: RootFS, user: str) -> list[str]:
    """A named User (or group) must resolve in the image's /etc/passwd (/etc/group), as runc requires."""
    name, _, group = user.partition(":")
    checks = [(name, "/etc/passwd"), (group, "/etc/group")]
    return [
        f"User {user!r}: {wanted!r} is not in {database}"
        for wanted, database in checks
        if wanted and not wanted.isdigit() and wanted not in _names(root, database)
    ]


def _names(root: RootFS, database: str) -> set[str]:
    resolved = root.resolve(PurePosixPath(database))
    if not resolved.exists:
        return set()
    text = root.read(resolved.path, limit=CONFIG_READ_LIMIT).decode("utf-8", "replace")
    return {line.split(":", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def run_exercised(
    engine: Engine, spec: ContainerSpec, plan: ExercisePlan, lingering: Callable[[], None] = lambda: None
) -> RunOutcome:
    """One untraced run of an image with the probes; the container never outlives the call. A container
    that cannot even start (its entrypoint is gone) is an outcome to compare, not an error. `lingering()` is
    called once a server's probes are done, while it is left running."""
    with owned_container(engine, spec, "run") as container_id:
        try:
            start_owned(engine, container_id)
        except ContainerStartFailed as error:
            return _not_started(plan, engine.wait(container_id, 0), error.why)
        return exercise(engine, container_id, plan, lambda phase: lingering() if phase == AFTER_PROBES else None)


def _not_started(plan: ExercisePlan, exit_code: int | None, why: str) -> RunOutcome:
    names = [probe.name for probe in plan.probes] if plan.mode == "server" else [BATCH_RUN]
    outcomes = tuple(ProbeOutcome(name, False, f"not run: the container did not start ({why})") for name in names)
    return RunOutcome(plan.mode, exit_code, running_after_probes=False, probes=outcomes, output_tail=why)


def compare_runs(original: RunOutcome, slimmed: RunOutcome) -> tuple[ProbeComparison, ...]:
    """Probe by probe (matched by name), then the container's own fate."""
    slimmed_by_name = {outcome.probe: outcome for outcome in slimmed.probes}
    comparisons = [_compare_probe(outcome, slimmed_by_name.get(outcome.probe)) for outcome in original.probes]
    comparisons.append(_compare_state(original, slimmed))
    return tuple(comparisons)


def _compare_probe(original: ProbeOutcome, slimmed: ProbeOutcome | None) -> ProbeComparison:
    checked = tuple(original.fingerprint)
    volatile = {key: stable.compared for key, stable in original.volatile.items()}
    if slimmed is None:
        return ProbeComparison(original.probe, original.detail, "not run", same=False, checked=checked,
                               volatile=volatile)
    same = original.ok == slimmed.ok and next(_differences(original, slimmed), None) is None
    slimmed_detail = slimmed.detail if same else _difference(original, slimmed)
    return ProbeComparison(original.probe, original.detail, slimmed_detail, same=same, checked=checked,
                           readiness=slimmed.readiness, volatile=volatile)


def _difference(original: ProbeOutcome, slimmed: ProbeOutcome) -> str:
    """Name the first fingerprint key that differs (in the original's order: the crawl's), so a user knows
    which URL or output broke."""
    if not slimmed.fingerprint:  # the probe did not run or got nothing: its detail says why
        return slimmed.detail
    first = next(_differences(original, slimmed), None)
    return f"{slimmed.detail} (first difference: {first[0]}: {first[1]})" if first else slimmed.detail


def _differences(original: ProbeOutcome, slimmed: ProbeOutcome) -> Iterator[tuple[str, str]]:
    """(key, what differs) for every fingerprint key; a volatile one is compared by its stable parts only."""
    for key in dict.fromkeys([*original.fingerprint, *slimmed.fingerprint]):
        before, after = original.fingerprint.get(key), slimmed.fingerprint.get(key)
        if key in original.volatile:
            why = volatility.unlike_stable(original.volatile[key], after, slimmed.parts.get(key, {}))
        else:
            why = _change(key, before, after) if before != after else None
        if why:
            yield key, why


def _change(key: str, before: Any, after: Any) -> str:
    if after is None:
        return "not seen in the slimmed run"
    if before is None:
        return "not seen in the original run"
    if isinstance(before, Mapping) and isinstance(after, Mapping) and "status" in before:  # an HTTP visit
        if before.get("status") != after.get("status"):
            return f"status {after.get('status')}, the original {before.get('status')}"
        return f"same status {after.get('status')}, different body"
    if key == "sha256":
        return "different output"
    return f"{after!r}, the original {before!r}"


def _compare_state(original: RunOutcome, slimmed: RunOutcome) -> ProbeComparison:
    def state(run: RunOutcome) -> str:
        if run.mode == "batch":
            return f"exited {run.exit_code}" if run.exit_code is not None else "still running at timeout"
        return "running after probes" if run.running_after_probes else f"stopped (exit {run.exit_code})"

    return ProbeComparison("container state", state(original), state(slimmed), same=state(original) == state(slimmed))
