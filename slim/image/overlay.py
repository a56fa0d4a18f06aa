"""Layers stacked the way overlayfs shows them: the one place that knows the stacking rules.

An upper entry hides the lower one at its path, directories merge unless the upper layer makes one
opaque, and a whiteout deletes the lower path with everything below it. What a value is beyond its kind
is the caller's: the rootfs index stacks file entries with where their bytes sit, xray stacks the bytes
each layer stored, and learns from `apply` what each layer hid.
"""
from __future__ import annotations

import dataclasses
import enum
import posixpath
from typing import Callable, Generic, Iterable, Protocol, TypeVar

from slim.model import EntryKind


class Stacked(Protocol):
    @property
    def kind(self) -> EntryKind: ...


V = TypeVar("V", bound=Stacked)


class Hiding(enum.Enum):
    DELETED = "deleted"  # by a whiteout or an opaque directory
    OVERWRITTEN = "overwritten"  # by an upper entry at the same path (or a file made a directory's parent)


@dataclasses.dataclass(frozen=True)
class Hidden(Generic[V]):
    """What one layer took out of view at `path`: the lower values there and below it."""

    path: str
    how: Hiding
    values: list[V]


class Overlay(Generic[V]):
    """The visible values by path ("/"-rooted keys), one layer applied after another, bottom first."""

    def __init__(self, implied_directory: Callable[[str], V]) -> None:
        self._implied_directory = implied_directory  # what a path the tars imply but never list becomes
        self.entries: dict[str, V] = {"/": implied_directory("/")}
        self._below: dict[str, set[str]] = {"/": set()}  # visible directory -> its children's keys

    def apply(
        self, opaque: Iterable[str], whiteouts: Iterable[str], members: Iterable[tuple[str, V]]
    ) -> list[Hidden[V]]:
        """One layer's opaque directories, whiteouts and members; what it hid, in the order it hid it."""
        hidden: list[Hidden[V]] = []
        # Deletions reach only lower layers, so they go first, whatever the order inside the tar.
        for directory in opaque:
            below = [value for child in list(self._below.get(directory, ())) for value in self._remove(child)]
            hidden.append(Hidden(directory, Hiding.DELETED, below))
        for path in whiteouts:
            hidden.append(Hidden(path, Hiding.DELETED, self._remove(path)))
        for key, value in members:
            self._put(key, value, hidden)
        return hidden

    def _put(self, key: str, value: V, hidden: list[Hidden[V]]) -> None:
        if key == "/":
            if value.kind is EntryKind.DIR:  # the root can only ever be a directory
                self.entries[key] = value
            return
        parent = posixpath.dirname(key)
        if parent not in self._below:
            self._put(parent, self._implied_directory(parent), hidden)
        if key in self.entries and not (key in self._below and value.kind is EntryKind.DIR):
            hidden.append(Hidden(key, Hiding.OVERWRITTEN, self._remove(key)))
        self._below[parent].add(key)
        self.entries[key] = value
        if value.kind is EntryKind.DIR:
            self._below.setdefault(key, set())

    def _remove(self, top: str) -> list[V]:
        """Take `top` and everything below it out of view; the values that were there."""
        if top not in self.entries or top == "/":
            return []
        self._below[posixpath.dirname(top)].discard(top)
        removed = []
        stack = [top]
        while stack:
            key = stack.pop()
            removed.append(self.entries.pop(key))
            stack.extend(self._below.pop(key, ()))
        return removed
