"""Read-only index of an image's merged filesystem, built straight from its layer tars.

Layers are never unpacked: every member is indexed with its metadata and with where its bytes sit in
its layer tar, so `open` hands out a window onto the tar. A layer tar is either the engine's own, read in
place from its storage (slim.image.storedlayers), or a file of `docker save`'s export (spool_image).
Paths are resolved inside the image root the way the kernel would with the image as `/` (like
openat2(RESOLVE_IN_ROOT)): nothing named by the image ever reaches a host path.
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import gzip
import io
import json
import os
import posixpath
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, NamedTuple, Protocol, Sequence

import zstandard

from slim.engine import Engine, StoredImage
from slim.errors import SlimError
from slim.model import ROOT, EntryKind, FileEntry
from .overlay import Overlay
from .sparse import zeros_as_holes
from .storedlayers import SeekableReader, StoredLayerTar, StoredLayerUnreadable, read_config
from .tarheaders import TarMember, UnusualTar, read_members, tarfile_members

MAX_SYMLINKS = 40  # the kernel's MAXSYMLINKS: following one more is ELOOP
CHUNK = 1 << 20
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"

_KINDS = {
    tarfile.REGTYPE: EntryKind.FILE,
    tarfile.AREGTYPE: EntryKind.FILE,
    tarfile.CONTTYPE: EntryKind.FILE,
    tarfile.DIRTYPE: EntryKind.DIR,
    tarfile.SYMTYPE: EntryKind.SYMLINK,
    tarfile.CHRTYPE: EntryKind.CHAR,
    tarfile.BLKTYPE: EntryKind.BLOCK,
    tarfile.FIFOTYPE: EntryKind.FIFO,
}

# Compressed layers are recognised by their first bytes, never by a name: an OCI layout names every blob
# by its digest alone, and the containerd image store saves layers as it keeps them (often gzip).
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_MEMBER_LINKS = 8  # a saved archive links a member to another at most once; more is a loop


class UnreadableImage(SlimError):
    """The saved image, or one of its layers, is not in a form this index can read."""


class LayerTar(Protocol):
    """An uncompressed layer tar, wherever its bytes are."""

    size: int

    def reader(self) -> BinaryIO:
        """A new seekable file over the tar (one per thread that reads)."""
        ...


@dataclasses.dataclass(frozen=True)
class TarOnDisk:
    """A layer tar that is a file of its own (spooled from an export, or the layer we wrote)."""

    path: Path

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def reader(self) -> BinaryIO:
        return self.path.open("rb")

    def __str__(self) -> str:
        return str(self.path)


def layer_tar(layer: Path | LayerTar) -> LayerTar:
    return TarOnDisk(layer) if isinstance(layer, Path) else layer


@dataclasses.dataclass(frozen=True)
class SourceImage:
    """An image's layers, bottom first, and its config, as the index and the build read them."""

    layers: tuple[LayerTar, ...]
    config: Mapping[str, Any]
    read_in_place: bool  # from the engine's storage; False: exported with `docker save`


def source_image(engine: Engine, image_id: str, workdir: Path) -> SourceImage:
    """The image read in place where the engine keeps it in a layout we know, exported otherwise."""
    stored = engine.stored_image(image_id)
    if stored is not None:
        with contextlib.suppress(StoredLayerUnreadable):  # removed or rewritten while we looked: the export says
            return stored_source(stored, image_id, workdir)  # what the image is now
    return exported_source(engine, image_id, workdir)


def stored_source(stored: StoredImage, image_id: str, workdir: Path) -> SourceImage:
    """The image as the engine stores it (`Engine.stored_image`), its layers read in place; StoredLayerUnreadable
    when the engine's records no longer match its storage."""
    workdir.mkdir(parents=True, exist_ok=True)
    layers = tuple(StoredLayerTar(layer, workdir / f"headers-{n}") for n, layer in enumerate(stored.layers))
    return SourceImage(layers, read_config(stored.config, image_id), read_in_place=True)


def exported_source(engine: Engine, image_id: str, workdir: Path) -> SourceImage:
    """The image exported by the engine (`docker save`) into `workdir`."""
    tars = spool_image(engine, image_id, workdir)
    return SourceImage(tuple(TarOnDisk(tar) for tar in tars), saved_config(workdir, image_id), read_in_place=False)


# ---------------------------------------------------------------- spooling `docker save`


def spool_image(engine: Engine, image_id: str, workdir: Path) -> list[Path]:
    """Stream the saved image into `workdir` as plain files, layers decompressed; return the layer tars
    bottom layer first.

    Every layout the engines' image export produces reads the same way, through the `manifest.json` they
    all write: Docker before 25 (`<id>/layer.tar`), Docker 25+ and the containerd store (an OCI layout,
    `blobs/sha256/<hex>`), Podman (`<id>/layer.tar` a symlink to `../<id>.tar`). A member that is a link
    becomes a hard link to the member it names, and only to another member of the same archive.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        _spool_members(engine.save_image(image_id), workdir)
    except (tarfile.TarError, gzip.BadGzipFile, zstandard.ZstdError, EOFError) as e:
        raise UnreadableImage(f"saved image {image_id}: {e}") from e
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as e:
        raise UnreadableImage(f"saved image {image_id}: two members claim the name {e.filename}") from e
    except UnreadableImage as e:
        raise UnreadableImage(f"saved image {image_id}: {e.message}") from e
    return [_saved_member(workdir, name, image_id) for name in _manifest(workdir, image_id)["Layers"]]


def _spool_members(chunks: Iterable[bytes], workdir: Path) -> None:
    links: dict[str, str] = {}  # member name -> the member it links to
    with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|", bufsize=CHUNK) as saved:
        for member in saved:
            name = _member_name(member.name)
            if member.isfile():
                _spool_member(saved, member, workdir / name)
            elif member.issym() or member.islnk():
                links[name] = _link_target(member)
    for name in links:
        _materialise_link(workdir, name, links)


def _member_name(name: str) -> str:
    """A member name as a relative path that cannot leave the directory it is joined onto."""
    normal = posixpath.normpath(name)
    if normal.startswith(("/", "../")) or normal in (".", ".."):
        raise UnreadableImage(f"member {name!r} names a place outside the archive")
    return normal


def _link_target(member: tarfile.TarInfo) -> str:
    # A symlink's target is relative to its own directory; a hard link's to the archive root.
    base = posixpath.dirname(member.name) if member.issym() else ""
    try:
        return _member_name(posixpath.join(base, member.linkname))
    except UnreadableImage:
        raise UnreadableImage(f"{member.name} links outside the archive ({member.linkname})") from None


def _materialise_link(workdir: Path, name: str, links: Mapping[str, str]) -> None:
    target = name
    for _ in range(MAX_MEMBER_LINKS):
        target = links[target]
        if target not in links:
            break
    if not (workdir / target).is_file() or target in links:
        raise UnreadableImage(f"{name} links to {links[name]}, which is not a file of the archive")
    (workdir / name).parent.mkdir(parents=True, exist_ok=True)
    os.link(workdir / target, workdir / name)


def _spool_member(saved: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # A sparse file of the image stays sparse in the spool: its zero chunks become holes.
    with saved.extractfile(member) as data, target.open("wb") as out, zeros_as_holes(out) as sparse:  # type: ignore[union-attr]
        shutil.copyfileobj(_decompressed(data), sparse, CHUNK)


def _decompressed(data: io.BufferedReader) -> BinaryIO:
    """`data` itself, or its decompression when it starts as a gzip or zstd stream does."""
    head = data.peek(len(ZSTD_MAGIC))[: len(ZSTD_MAGIC)]
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=data, mode="rb")
    if head.startswith(ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    return data


def _manifest(workdir: Path, image_id: str) -> Mapping[str, Any]:
    """The one image of the saved `manifest.json`: `Config` and `Layers` name members of the archive."""
    try:
        (image,) = json.loads((workdir / "manifest.json").read_text())
        if not isinstance(image["Config"], str) or not all(isinstance(name, str) for name in image["Layers"]):
            raise TypeError("Config and Layers must name members")
        return image
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UnreadableImage(f"saved image {image_id}: no usable manifest.json ({e})") from e


def _saved_member(workdir: Path, name: str, image_id: str) -> Path:
    try:
        path = workdir / _member_name(name)
    except UnreadableImage as e:
        raise UnreadableImage(f"saved image {image_id}: manifest.json: {e.message}") from e
    if not path.is_file():
        raise UnreadableImage(f"saved image {image_id}: {name} missing from the archive")
    return path


class _ChunkReader(io.RawIOBase):
    """A forward-only file over an iterator of byte chunks, so tarfile can read the engine's stream."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")  # a view, so handing out part of a chunk copies nothing twice

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


# ---------------------------------------------------------------- the index


@dataclasses.dataclass(frozen=True)
class Resolved:
    path: PurePosixPath
    symlinks: tuple[PurePosixPath, ...]  # every symlink followed, in order
    exists: bool
    loop: bool = False  # ELOOP: more than MAX_SYMLINKS symlinks on the way


class _Outcome(enum.Enum):
    FOUND = "found"
    MISSING = "missing"  # ENOENT
    NOT_DIR = "not-a-directory"  # ENOTDIR: a path component is not a directory
    LOOP = "loop"  # ELOOP: more than MAX_SYMLINKS symlinks


@dataclasses.dataclass(frozen=True, slots=True)
class _Lookup:
    """Where resolving a path got to. `key` is the path reached; past a failure, the rest is appended
    lexically so messages can still name the path."""

    key: str
    links: tuple[str, ...]
    outcome: _Outcome

    def then(self, name: str) -> _Lookup:
        return _Lookup(_lexical_child(self.key, name), self.links, self.outcome)


_AT_ROOT = _Lookup("/", (), _Outcome.FOUND)


class RootFS:
    """The merged filesystem of an image's layers, indexed without unpacking anything."""

    def __init__(self, layers: Sequence[LayerTar], entries: dict[str, FileEntry], blobs: dict[str, tuple[int, int]]):
        self._layers = tuple(layers)
        self._blobs = blobs  # path -> (layer index, data offset in that layer tar), FILE entries only
        self._children = _children_index(entries)
        self._by_key = {key: entries[key] for key in self._depth_first("/")}  # so `entries` iterates sorted
        self._entries = MappingProxyType({entry.path: entry for entry in self._by_key.values()})
        # The index never changes, so every resolved prefix can be remembered (the dentry cache).
        self._resolved: dict[str, _Lookup] = {"/": _AT_ROOT}

    @classmethod
    def from_layers(
        cls, layer_tars: Sequence[Path | LayerTar], members: Callable[[LayerTar], Iterable[TarMember]] | None = None
    ) -> RootFS:
        """The index of the layers, bottom first. `members(layer)`, asked for each layer in that order, gives
        its members when another process read them (slim.image.apart); they are read here otherwise."""
        layers = [layer_tar(layer) for layer in layer_tars]
        read = (lambda index, layer: _layer_of(index, layer, members(layer))) if members else _read_layer
        entries, blobs = _merged(read(index, layer) for index, layer in enumerate(layers))
        return cls(layers, _with_hardlink_groups(entries, blobs), blobs)

    # ------------------------------------------------ lookups by path as stored

    @property
    def entries(self) -> Mapping[PurePosixPath, FileEntry]:
        return self._entries

    def get(self, path: PurePosixPath) -> FileEntry | None:
        return self._by_key.get(_key(path))

    def children(self, directory: PurePosixPath) -> list[PurePosixPath]:
        return [self._by_key[key].path for key in self._children.get(_key(directory), ())]

    def walk(self, under: PurePosixPath) -> Iterator[FileEntry]:
        """`under` and everything below it, parents before children, siblings sorted by name."""
        top = _key(under)
        keys = self._depth_first(top) if top in self._by_key else ()
        return (self._by_key[key] for key in keys)

    def _depth_first(self, top: str) -> Iterator[str]:
        stack = [top]
        while stack:
            key = stack.pop()
            yield key
            stack.extend(reversed(self._children.get(key, ())))

    # ------------------------------------------------ resolution inside the image root

    def resolve(
        self, path: PurePosixPath, *, follow_last: bool = True, cwd: PurePosixPath = ROOT
    ) -> Resolved:
        found = self._lookup(str(ROOT / cwd / path), follow_last, MAX_SYMLINKS)
        return Resolved(
            path=self._path(found.key),
            symlinks=tuple(self._by_key[link].path for link in found.links),
            exists=found.outcome is _Outcome.FOUND,
            loop=found.outcome is _Outcome.LOOP,
        )

    def entry_at(self, path: str, *, follow_last: bool = True) -> FileEntry | None:
        """The entry an absolute path names, resolved as `resolve` does; None unless it exists. Text in, no
        pathlib: for loops over every line of a package database."""
        found = self._lookup(path, follow_last, MAX_SYMLINKS)
        return self._by_key[found.key] if found.outcome is _Outcome.FOUND else None

    def _path(self, key: str) -> PurePosixPath:
        entry = self._by_key.get(key)
        return entry.path if entry is not None else PurePosixPath(key)

    def _lookup(self, path: str, follow_last: bool, budget: int) -> _Lookup:
        """Walk `path` (absolute) component by component; `budget` is how many more symlinks the walk
        that asked may follow."""
        names = [name for name in path.split("/") if name]
        state = _AT_ROOT
        prefix = ""
        for depth, name in enumerate(names, 1):
            follow = follow_last or depth < len(names)
            prefix += "/" + name
            remembered = self._resolved.get(prefix) if follow else None
            if remembered is not None:
                state = remembered
            else:
                state = self._step(state, name, follow, budget)
                # A loop found with less than the full budget is an artefact of the caller's walk.
                if follow and (state.outcome is not _Outcome.LOOP or budget == MAX_SYMLINKS):
                    self._resolved[prefix] = state
            if len(state.links) > budget:
                return _Lookup(state.key, state.links, _Outcome.LOOP)
        return state

    def _step(self, at: _Lookup, name: str, follow: bool, budget: int) -> _Lookup:
        """One component, from the directory `at` resolved to."""
        if at.outcome is not _Outcome.FOUND:
            return at.then(name)
        if self._by_key[at.key].kind is not EntryKind.DIR:
            return _Lookup(at.key, at.links, _Outcome.NOT_DIR).then(name)
        if name in (".", ".."):
            return _Lookup(_lexical_child(at.key, name), at.links, _Outcome.FOUND)
        key = _lexical_child(at.key, name)
        entry = self._by_key.get(key)
        if entry is None:
            return _Lookup(key, at.links, _Outcome.MISSING)
        if entry.kind is not EntryKind.SYMLINK or not follow:
            return _Lookup(key, at.links, _Outcome.FOUND)
        links = at.links + (key,)
        if len(links) > budget:
            return _Lookup(key, links, _Outcome.LOOP)
        if not entry.link_target:
            return _Lookup(key, links, _Outcome.MISSING)  # the kernel answers ENOENT to an empty target
        # An absolute target restarts at the image root, never at the host's.
        target = posixpath.join(at.key, entry.link_target)
        beyond = self._lookup(target, True, budget - len(links))
        return _Lookup(beyond.key, links + beyond.links, beyond.outcome)

    # ------------------------------------------------ contents

    def open(self, path: PurePosixPath) -> BinaryIO:
        """A seekable read-only file over the bytes of `path` (symlinks followed inside the image)."""
        found = self._lookup(_key(path), True, MAX_SYMLINKS)
        if found.outcome is not _Outcome.FOUND:
            raise FileNotFoundError(errno.ENOENT, f"No such file in the image ({found.outcome.value})", str(path))
        entry = self._by_key[found.key]
        if entry.kind is not EntryKind.FILE:
            raise OSError(errno.EINVAL, f"Not a regular file in the image ({entry.kind.value})", str(path))
        layer, offset = self._blobs[found.key]
        return io.BufferedReader(_Window(self._layers[layer], offset, entry.size))

    def read(self, path: PurePosixPath, limit: int | None = None) -> bytes:
        with self.open(path) as data:
            return data.read(-1 if limit is None else limit)


class _Window(SeekableReader):
    """`size` bytes of a layer tar from `offset` on, as a file of its own."""

    def __init__(self, tar: LayerTar, offset: int, size: int):
        super().__init__(size)
        self._file = tar.reader()
        self._offset = offset

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        count = max(0, min(len(buffer), self._size - self._position))
        self._file.seek(self._offset + self._position)
        count = self._file.readinto(memoryview(buffer)[:count])
        self._position += count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


# ---------------------------------------------------------------- reading and stacking layers


class _Member(NamedTuple):
    entry: FileEntry
    blob: tuple[int, int] | None  # (layer index, data offset in that layer tar) for FILE entries

    @property
    def kind(self) -> EntryKind:
        return self.entry.kind


@dataclasses.dataclass
class _Layer:
    """One layer's members (last occurrence wins, as when unpacking) and its deletions."""

    members: dict[str, _Member] = dataclasses.field(default_factory=dict)
    whiteouts: list[str] = dataclasses.field(default_factory=list)  # paths deleted from lower layers
    opaque: list[str] = dataclasses.field(default_factory=list)  # directories whose lower children go


def _read_layer(index: int, layer_tar: LayerTar) -> _Layer:
    try:
        with layer_tar.reader() as data:
            return _layer_of(index, layer_tar, read_members(data))
    except UnusualTar:
        pass  # a header form only tarfile reads
    try:
        with layer_tar.reader() as data:
            return _layer_of(index, layer_tar, tarfile_members(data))
    except tarfile.TarError as e:
        raise UnreadableImage(f"layer {layer_tar}: {e}") from e


def _layer_of(index: int, source: LayerTar, members: Iterable[TarMember]) -> _Layer:
    layer = _Layer()
    for member in members:
        _add_member(layer, index, member, source)
    return layer


def _add_member(layer: _Layer, index: int, member: TarMember, source: LayerTar) -> None:
    key = _member_key(member.name)
    parent, name = posixpath.split(key)
    if name == OPAQUE:
        layer.opaque.append(parent)
    elif name.startswith(WHITEOUT + WHITEOUT):
        pass  # other aufs bookkeeping (.wh..wh.plnk, ...) is not part of the filesystem
    elif name.startswith(WHITEOUT):
        layer.whiteouts.append(posixpath.join(parent, name[len(WHITEOUT):]))
    elif member.type == tarfile.LNKTYPE:
        _add_hardlink(layer, key, _member_key(member.linkname), source)
    else:
        entry = _entry(key, member, source, index)
        layer.members[key] = _Member(entry, (index, member.offset_data) if entry.kind is EntryKind.FILE else None)


def _add_hardlink(layer: _Layer, key: str, target: str, source: LayerTar) -> None:
    """A second name of an inode the same tar already holds: same metadata, same bytes."""
    if target not in layer.members:
        raise UnreadableImage(f"layer {source}: hard link {key} -> {target}: target not earlier in the layer")
    entry, blob = layer.members[target]
    layer.members[key] = _Member(dataclasses.replace(entry, path=PurePosixPath(key)), blob)


def _entry(key: str, member: TarMember, source: LayerTar, layer: int) -> FileEntry:
    kind = _KINDS.get(member.type)
    if kind is None or member.sparse:
        raise UnreadableImage(f"layer {source}: {key}: unsupported tar member type {member.type!r}")
    return FileEntry(
        path=PurePosixPath(key),
        kind=kind,
        mode=member.mode & 0o7777,
        uid=member.uid,
        gid=member.gid,
        mtime=member.mtime,
        size=member.size if kind is EntryKind.FILE else 0,
        link_target=member.linkname if kind is EntryKind.SYMLINK else None,
        xattrs=member.xattrs,
        devmajor=member.devmajor,
        devminor=member.devminor,
        uname=member.uname,
        gname=member.gname,
        layer=layer,
    )


def _implied_directory(key: str) -> FileEntry:
    """A directory the tars imply but never list: what unpacking would create (0755, root)."""
    return FileEntry(path=PurePosixPath(key), kind=EntryKind.DIR, mode=0o755, uid=0, gid=0, mtime=0)


def _merged(layers: Iterable[_Layer]) -> tuple[dict[str, FileEntry], dict[str, tuple[int, int]]]:
    """The layers stacked (slim.image.overlay): the visible entries and where each visible file's bytes sit."""
    overlay: Overlay[_Member] = Overlay(lambda key: _Member(_implied_directory(key), None))
    for layer in layers:
        overlay.apply(layer.opaque, layer.whiteouts, layer.members.items())
    entries = {key: member.entry for key, member in overlay.entries.items()}
    blobs = {key: member.blob for key, member in overlay.entries.items() if member.blob is not None}
    return entries, blobs


def _with_hardlink_groups(entries: dict[str, FileEntry], blobs: dict[str, tuple[int, int]]) -> dict[str, FileEntry]:
    """Names still sharing one tar member's bytes are one inode: each carries the whole group."""
    names: dict[tuple[int, int], list[str]] = {}
    for key, blob in blobs.items():
        names.setdefault(blob, []).append(key)
    for group in (keys for keys in names.values() if len(keys) > 1):
        paths = tuple(sorted(entries[key].path for key in group))
        for key in group:
            entries[key] = dataclasses.replace(entries[key], hardlink_group=paths)
    return entries


def _children_index(entries: Mapping[str, FileEntry]) -> dict[str, tuple[str, ...]]:
    children: dict[str, list[str]] = {}
    for key in entries:
        if key != "/":
            children.setdefault(posixpath.dirname(key), []).append(key)
    # Siblings share their parent's prefix, so sorting the keys sorts them by name.
    return {parent: tuple(sorted(keys)) for parent, keys in children.items()}


# ---------------------------------------------------------------- layer by layer (for `slim xray`)


@dataclasses.dataclass(frozen=True)
class LayerIndex:
    """One layer tar read on its own, nothing merged: what it adds or replaces, what it deletes below."""

    tar: LayerTar
    entries: Mapping[PurePosixPath, FileEntry]  # the last occurrence of each path, as unpacking keeps it
    whiteouts: tuple[PurePosixPath, ...]  # paths deleted (with everything below them) from lower layers
    opaque: tuple[PurePosixPath, ...]  # directories whose lower contents this layer hides
    # Hard links: names whose bytes another name of this layer already stores, so sizes count once.
    shared_data: frozenset[PurePosixPath] = frozenset()


def index_layers(layer_tars: Sequence[Path | LayerTar]) -> tuple[RootFS, list[LayerIndex]]:
    """The merged view (as RootFS.from_layers builds it) and each layer's own listing, bottom layer
    first, reading every tar once."""
    layers = [layer_tar(layer) for layer in layer_tars]
    read = [_read_layer(number, tar) for number, tar in enumerate(layers)]
    indexes = []
    for tar, layer in zip(layers, read):
        first_name: dict[tuple[int, int], str] = {}
        for key, (_, blob) in sorted(layer.members.items()):
            if blob is not None:
                first_name.setdefault(blob, key)
        indexes.append(
            LayerIndex(
                tar=tar,
                entries=MappingProxyType({entry.path: entry for entry, _ in layer.members.values()}),
                whiteouts=tuple(PurePosixPath(key) for key in layer.whiteouts),
                opaque=tuple(PurePosixPath(key) for key in layer.opaque),
                shared_data=frozenset(
                    PurePosixPath(key) for key, (_, blob) in layer.members.items()
                    if blob is not None and first_name[blob] != key
                ),
            )
        )
    entries, blobs = _merged(read)
    return RootFS(layers, _with_hardlink_groups(entries, blobs), blobs), indexes


def layer_steps(config: Mapping[str, Any], layer_count: int) -> tuple[str, ...] | None:
    """The Dockerfile step (`created_by`) behind each layer, bottom first: the saved config's history
    entries not marked empty_layer map in order onto the layers. None when the counts disagree."""
    history = config.get("history")
    if not isinstance(history, list):
        return None
    steps = tuple(str(h.get("created_by", "")) for h in history if isinstance(h, dict) and not h.get("empty_layer"))
    return steps if len(steps) == layer_count else None


def saved_config(workdir: Path, image_id: str) -> dict:
    """The image config that spool_image kept in `workdir`: its `history` names the step behind each layer."""
    path = _saved_member(workdir, _manifest(workdir, image_id)["Config"], image_id)
    try:
        config = json.loads(path.read_text())
        if not isinstance(config, dict):
            raise ValueError("the config is not a JSON object")
        return config
    except (OSError, ValueError) as e:
        raise UnreadableImage(f"saved image {image_id}: no usable image config ({e})") from e


# ---------------------------------------------------------------- path spelling


def _member_key(name: str) -> str:
    """A tar member name as an absolute image path: "./usr/bin/x" -> "/usr/bin/x"; `..` stops at `/`."""
    return posixpath.normpath("/" + name.lstrip("/"))


def _key(path: PurePosixPath) -> str:
    # An absolute path is its own key (str() of a path is cached); joining it to / again made a new path
    # on every lookup, the closure's most frequent call.
    return str(path) if path.is_absolute() else str(ROOT / path)


def _lexical_child(directory: str, name: str) -> str:
    if name == "..":
        return posixpath.dirname(directory)
    if name == ".":
        return directory
    return directory.rstrip("/") + "/" + name
