"""An image's index read in a forked copy of this process, while this one goes on.

A build indexes the original image while its traced container starts and is probed. Both are Python work in
one process: the index parses every tar header (CPU), the trace answers the engine and the application
(latency), and they take turns on one interpreter lock. Measured on redis: the probes ended 0.3 s later
than with the index out of the way. Forked, a child parses the engine's tar-split records and the tar
headers on another core, and streams each layer's members back as plain tuples (pickled, no path objects,
so they load at C speed); this process builds the index's entries from them as they arrive.

The child runs that parsing and nothing else (slim.forking says what a child may do; the export, where one is
needed, is done here first), and the build waits for its index as it waited for a thread's. Whatever goes
wrong in it (an exception, a crash, no process to be had), the work is done again here, where it raises what
it would have raised.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import pickle
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, Callable, Iterator, Mapping

from slim import forking
from slim.engine import Engine
from .rootfs import RootFS, SourceImage, exported_source, stored_source
from .storedlayers import StoredLayerUnreadable
from .tarheaders import NO_XATTRS, TarMember, read_members


CHUNK = 1000  # members a message: a layer of 100,000 files is indexed here while the child parses it


class _ChildFailed(Exception):
    """The child sent less than the whole index."""


def index_image(engine: Engine, image_id: str, workdir: Path) -> tuple[SourceImage, RootFS]:
    """`source_image` and `RootFS.from_layers` of its layers, the parsing done in a forked child."""
    stored = engine.stored_image(image_id)
    if stored is not None:
        with contextlib.suppress(StoredLayerUnreadable):  # as source_image: the export says what the image is now
            return _indexed(lambda: stored_source(stored, image_id, workdir))
    exported = exported_source(engine, image_id, workdir)  # the engine is asked here: the child never calls it
    return _indexed(lambda: exported)


def _indexed(make_source: Callable[[], SourceImage]) -> tuple[SourceImage, RootFS]:
    with contextlib.suppress(_ChildFailed):
        return _from_child(make_source)
    source = make_source()
    return source, RootFS.from_layers(source.layers)


def _from_child(make_source: Callable[[], SourceImage]) -> tuple[SourceImage, RootFS]:
    try:
        child = forking.fork(functools.partial(_child, make_source))
    except OSError as e:  # no process or memory to be had
        raise _ChildFailed from e
    try:
        received = pickle.Unpickler(child.output)  # one unpickler for the child's one pickler: they share a memo
        source = _next(received)
        return source, RootFS.from_layers(source.layers, members=lambda _layer: _layer_members(received))
    finally:
        child.end()


def _layer_members(received: pickle.Unpickler) -> Iterator[TarMember]:
    while chunk := _next(received):
        yield from chunk


def _next(received: pickle.Unpickler) -> Any:
    try:
        return received.load()
    except (EOFError, pickle.UnpicklingError) as e:  # the child stopped short: it failed
        raise _ChildFailed from e


def _child(make_source: Callable[[], SourceImage], stream: BinaryIO) -> None:
    """The source image, then each layer's members, bottom layer first, in chunks that an empty one ends. Stops
    at the first error, and at a header form only tarfile reads (UnusualTar): RootFS reads it here then."""
    sent = _Pickler(stream, pickle.HIGHEST_PROTOCOL)
    source = make_source()
    sent.dump(source)
    for layer in source.layers:
        with layer.reader() as data:
            for chunk in _chunks(read_members(data)):
                sent.dump(chunk)
                stream.flush()  # the parent indexes these while the next ones are parsed
        sent.dump(())


def _chunks(members: Iterator[TarMember]) -> Iterator[tuple[TarMember, ...]]:
    while chunk := tuple(itertools.islice(members, CHUNK)):
        yield chunk


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        # A member's extended attributes are a read-only mapping, which pickle cannot take as it is.
        if type(obj) is MappingProxyType:
            return _read_only, (dict(obj),)
        return NotImplemented


def _read_only(attributes: dict[str, bytes]) -> Mapping[str, bytes]:
    return MappingProxyType(attributes) if attributes else NO_XATTRS
