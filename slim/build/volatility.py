"""Volatility learned, not guessed: what differs between two runs of the original is compared by its stable parts.

The original is probed twice. A fingerprint entry equal in both runs must be equal in the slimmed run. One
that differed (a status page with the time, a counter, an uptime) is volatile: the slimmed run must match
only what both original runs agreed on: the status, the content type and the parts of the body that did
not change (for JSON the keys and the unchanged values, for HTML the document structure).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from probes.bodies import describe_parts, part_words
from probes.interface import ProbeOutcome, Volatile


def learn(first: ProbeOutcome, second: ProbeOutcome | None) -> ProbeOutcome:
    """`first` with `volatile` set to every fingerprint entry `second` (the same probe, run again) did not
    repeat; entries only `second` saw are volatile too (optional)."""
    if second is None:
        return first
    volatile = {
        key: _stable(first, second, key)
        for key in dict.fromkeys([*first.fingerprint, *second.fingerprint])
        if first.fingerprint.get(key) != second.fingerprint.get(key)
    }
    return dataclasses.replace(first, volatile=volatile)


def _stable(first: ProbeOutcome, second: ProbeOutcome, key: str) -> Volatile:
    before, after = first.fingerprint.get(key), second.fingerprint.get(key)
    if before is None or after is None:
        return Volatile("seen in one of two runs of the original: compared when present", optional=True)
    fields = {}
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        fields = {name: value for name, value in before.items() if after.get(name) == value}
    first_parts, second_parts = first.parts.get(key, {}), second.parts.get(key, {})
    parts = {name: value for name, value in first_parts.items() if second_parts.get(name) == value}
    compared = ", ".join(filter(None, [*(_field_words(name, value) for name, value in fields.items()),
                                      describe_parts(list(parts))]))
    return Volatile(compared or "not compared: it differed between two runs of the original", fields, parts)


def _field_words(name: str, value: Any) -> str:
    return f"{name.replace('_', ' ')} {value}"


def unlike_stable(volatile: Volatile, after: Any, parts: Mapping[str, str]) -> str | None:
    """What of `after` (a fingerprint value of another run, with the digests of its body's `parts`) differs
    from what two runs of the original agreed on; None when nothing does."""
    if after is None:
        return None if volatile.optional else "not seen in the slimmed run"
    for name, value in volatile.fields.items():
        seen = after.get(name) if isinstance(after, Mapping) else None
        if seen != value:
            return f"{_field_words(name, seen)}, the original {value} (a volatile answer)"
    changed = [name for name, value in volatile.parts.items() if parts.get(name) != value]
    if changed:
        return f"different {part_words(changed[0])} (a volatile answer; compared: {volatile.compared})"
    return None
