"""The slimmed image: first a plan (a value, no I/O), then a reproducible layer, then a loaded image.

Same plan => same layer bytes => same diff_id: nothing here reads the clock, and the layer's entries carry
the original metadata (mode, owner, mtime, xattrs, device numbers) rather than the host's.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import io
import json
import tarfile
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

from .closure import kept_entry
from slim.engine import Engine
from slim.errors import SlimError
from slim.model import ROOT, BuiltImage, Closure, EntryKind, FileEntry, ImageFacts, ImagePlan
from slim.ownership import HeldInterrupts, deferred_interrupts
from slim.image.rootfs import CHUNK, RootFS, TarOnDisk
from slim.image.tarheaders import XATTR_RECORD
from slim.image.sparse import zeros_as_holes
from .sizes import BackgroundGzip

SOURCE_LABEL = "io.slimtrace.source-image"
# What `docker inspect` adds to an image's Config but the image config JSON does not hold (run-time state).
RUNTIME_CONFIG_KEYS = frozenset(
    {"Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce", "Image"}
)
LAYER_NAME = "layer.tar"  # the slimmed layer: its name in the image archive, and its copy in build_image's workdir
ARCHIVE_MTIME = 0  # members of the outer `docker save` tar: a fixed time keeps the archive reproducible

_TAR_TYPES = {
    EntryKind.FILE: tarfile.REGTYPE,
    EntryKind.DIR: tarfile.DIRTYPE,
    EntryKind.SYMLINK: tarfile.SYMTYPE,
    EntryKind.CHAR: tarfile.CHRTYPE,
    EntryKind.BLOCK: tarfile.BLKTYPE,
    EntryKind.FIFO: tarfile.FIFOTYPE,
}


class InconsistentPlan(SlimError):
    """The closure names a path the image does not have, or leaves out a directory above a kept path."""


@dataclasses.dataclass(frozen=True)
class AssembledImage:
    image: BuiltImage  # without its layer's gzip size yet
    gzip: BackgroundGzip  # that size, worked out in the background while the build goes on; close() stops it

    def measured(self) -> BuiltImage:
        """The image with its layer's gzip size (waits for it)."""
        figure = self.gzip.result()
        return dataclasses.replace(
            self.image, compressed_size=figure.compressed_size, compressed_by=figure.compressed_by
        )


# ---------------------------------------------------------------- plan


def plan_image(
    closure: Closure, rootfs: RootFS, facts: ImageFacts, added: Mapping[PurePosixPath, bytes] = MappingProxyType({})
) -> ImagePlan:
    """The kept entries (rewritten ones with their new size) and `added`: new files of ours (the SBOM),
    with the directories above them that the image lacks."""
    kept = [_kept_entry(path, closure, rootfs) for path in closure.kept]
    return ImagePlan(
        entries=tuple(sorted(kept + _added_entries(added, closure), key=_by_path)),
        config=_slim_config(facts),
        created=facts.created,
        source_id=facts.id,
        os=facts.os,
        architecture=facts.architecture,
        contents={**closure.rewritten, **added},
    )


def _kept_entry(path: PurePosixPath, closure: Closure, rootfs: RootFS) -> FileEntry:
    entry = kept_entry(rootfs, closure, path)
    if entry is None:
        raise InconsistentPlan(f"the closure keeps {path}, which the image does not have")
    if path.parent != ROOT and path.parent not in closure.kept:
        raise InconsistentPlan(f"the closure keeps {path} but not the directory {path.parent} above it")
    return entry


def _added_entries(added: Mapping[PurePosixPath, bytes], closure: Closure) -> list[FileEntry]:
    # A fixed mtime (0), root-owned, world-readable: the same input still gives the same layer.
    directories = {d for path in added for d in path.parents if d != ROOT and d not in closure.kept}
    return [FileEntry(d, EntryKind.DIR, 0o755, 0, 0, 0) for d in directories] + [
        FileEntry(path, EntryKind.FILE, 0o644, 0, 0, 0, size=len(data)) for path, data in added.items()
    ]


def _by_path(entry: FileEntry) -> PurePosixPath:
    # PurePosixPath orders component by component: a directory comes right before what it holds.
    return entry.path


def _slim_config(facts: ImageFacts) -> dict[str, Any]:
    config = {key: copy.deepcopy(value) for key, value in facts.config.items() if key not in RUNTIME_CONFIG_KEYS}
    config["Labels"] = {**(config.get("Labels") or {}), SOURCE_LABEL: facts.id}
    return config


# ---------------------------------------------------------------- the layer


@dataclasses.dataclass(frozen=True)
class _Member:
    """One member of the layer tar: its header blocks (PAX records included) and where its data comes from."""

    path: PurePosixPath
    header: bytes
    size: int  # data bytes after the header
    data: Callable[[], BinaryIO] | None = None


@dataclasses.dataclass(frozen=True)
class PlannedLayer:
    """The layer tar as it will be streamed: every header made up front, so its length is known before any
    file's bytes are read (the image archive gives that length ahead of the layer's first byte)."""

    members: tuple[_Member, ...]
    ending: int  # zero bytes after the last member: two end blocks, then up to a whole record, as tarfile pads
    size: int  # the whole tar


def plan_layer(plan: ImagePlan, rootfs: RootFS) -> PlannedLayer:
    kept = {entry.path for entry in plan.entries}
    members = tuple(_member(entry, rootfs, kept, plan.contents) for entry in plan.entries)
    size = sum(len(member.header) + member.size + -member.size % tarfile.BLOCKSIZE for member in members)
    ending = 2 * tarfile.BLOCKSIZE + -(size + 2 * tarfile.BLOCKSIZE) % tarfile.RECORDSIZE
    return PlannedLayer(members, ending, size + ending)


def _member(
    entry: FileEntry, rootfs: RootFS, kept: set[PurePosixPath], contents: Mapping[PurePosixPath, bytes]
) -> _Member:
    info = _tar_header(entry)
    data: Callable[[], BinaryIO] | None = None
    first_name = next(path for path in (*entry.hardlink_group, entry.path) if path in kept)
    if first_name != entry.path:
        # Another kept name of this inode came earlier (both orders are by path): store the bytes once.
        info.type, info.linkname, info.size = tarfile.LNKTYPE, _member_name(first_name), 0
    elif entry.path in contents:
        data = functools.partial(io.BytesIO, contents[entry.path])
    elif entry.kind is EntryKind.FILE:
        data = functools.partial(rootfs.open, entry.path)
    # The header tarfile.TarFile.addfile writes in a PAX, UTF-8 archive.
    return _Member(entry.path, info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), info.size, data)


def layer_chunks(layer: PlannedLayer) -> Iterator[bytes]:
    """The layer tar, byte for byte what tarfile writes for the same members, in chunks of about CHUNK
    bytes: headers and small files are joined, as each chunk costs a write to the engine's socket."""
    pending = bytearray()
    for piece in _layer_pieces(layer):
        if len(pending) + len(piece) > CHUNK:
            if pending:
                yield bytes(pending)
                pending.clear()
            if len(piece) >= CHUNK:
                yield piece
                continue
        pending += piece
    if pending:
        yield bytes(pending)


def _layer_pieces(layer: PlannedLayer) -> Iterator[bytes]:
    for member in layer.members:
        yield member.header
        if member.data is not None:
            with member.data() as data:
                yield from _exactly(data, member)
            yield tarfile.NUL * (-member.size % tarfile.BLOCKSIZE)
    yield tarfile.NUL * layer.ending


def _exactly(data: BinaryIO, member: _Member) -> Iterator[bytes]:
    left = member.size
    while left:
        chunk = data.read(min(CHUNK, left))
        if not chunk:
            raise InconsistentPlan(f"{member.path} ends {left} bytes before the size the image's index gives it")
        left -= len(chunk)
        yield chunk


def _tar_header(entry: FileEntry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(_member_name(entry.path))
    info.type = _TAR_TYPES[entry.kind]
    info.mode, info.uid, info.gid, info.mtime = entry.mode, entry.uid, entry.gid, entry.mtime
    info.uname, info.gname = entry.uname, entry.gname
    info.size = entry.size if entry.kind is EntryKind.FILE else 0
    info.linkname = entry.link_target or ""
    info.devmajor, info.devminor = entry.devmajor, entry.devminor
    # tarfile writes surrogate-escaped PAX values back as the raw bytes they came from.
    info.pax_headers = {
        XATTR_RECORD + name: value.decode("utf-8", "surrogateescape") for name, value in sorted(entry.xattrs.items())
    }
    return info


def _member_name(path: PurePosixPath) -> str:
    return str(path.relative_to(ROOT))  # "usr/bin/x", and "." for the root, as layer tars spell them


class LayerStream:
    """The planned layer's chunks as they go by, hashed for its diff id and handed to each of `taps`."""

    def __init__(self, layer: PlannedLayer, *taps: Callable[[bytes], object]):
        self.size = layer.size
        self._layer = layer
        self._taps = taps
        self._sha256 = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in layer_chunks(self._layer):
            self._sha256.update(chunk)
            for tap in self._taps:
                tap(chunk)
            yield chunk

    @property
    def diff_id(self) -> str:
        """"sha256:<hex of the uncompressed tar>", once every chunk went by."""
        return f"sha256:{self._sha256.hexdigest()}"


# ---------------------------------------------------------------- the image


def image_archive(plan: ImagePlan, layer: LayerStream, work_tag: str) -> Iterator[bytes]:
    """The image as a `docker save` tar stream, tagged only with the build's work tag (the user's tag
    comes after verification). The layer comes first: its digest, which the config names, is known once
    it went by. Every engine reads the members by the names manifest.json gives, in any order, and an
    image's id depends on the config's and the layer's bytes only, never on these names."""
    yield from _archive_member(LAYER_NAME, layer, layer.size)
    config = _json(_image_config(plan, layer.diff_id))
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = _json([{"Config": config_name, "Layers": [LAYER_NAME], "RepoTags": [work_tag]}])
    # One last chunk: an interrupt held while the layer streamed cuts the upload off before the manifest.
    yield b"".join([
        *_archive_member(config_name, [config], len(config)),
        *_archive_member("manifest.json", [manifest], len(manifest)),
        tarfile.NUL * (2 * tarfile.BLOCKSIZE),  # end of archive
    ])


def _image_config(plan: ImagePlan, diff_id: str) -> Mapping[str, Any]:
    return {
        "architecture": plan.architecture,
        "os": plan.os,
        "config": plan.config,
        "created": plan.created,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": plan.created, "created_by": f"slimtrace: minified from {plan.source_id}"}],
    }


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _archive_member(name: str, chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, ARCHIVE_MTIME
    yield info.tobuf(tarfile.PAX_FORMAT, "utf-8")
    yield from chunks
    if size % tarfile.BLOCKSIZE:  # never an empty chunk: in a chunked upload that ends the body
        yield tarfile.NUL * (-size % tarfile.BLOCKSIZE)


def build_image(engine: Engine, plan: ImagePlan, rootfs: RootFS, workdir: Path, work_tag: str) -> AssembledImage:
    """Stream the image into the engine, tagged `work_tag` (see slim.ownership: that tag, not a flag of ours,
    is what makes the image this build's until it is handed over). Each kept file's bytes are read once:
    on their way into the engine they are hashed and copied to `workdir`, where verification indexes the
    copy rather than exporting the image again, and the layer's gzip size is then worked out in the background."""
    workdir.mkdir(parents=True, exist_ok=True)
    layer = plan_layer(plan, rootfs)
    with (workdir / LAYER_NAME).open("wb") as copy, zeros_as_holes(copy) as sparse:
        stream = LayerStream(layer, sparse.write)
        image_id = _load(engine, image_archive(plan, stream, work_tag))
    built = BuiltImage(
        id=image_id,
        layer_diff_id=stream.diff_id,
        layer_size=layer.size,
        size=engine.inspect_image(image_id).size,
        files=len(layer.members),
    )
    return AssembledImage(built, BackgroundGzip([TarOnDisk(workdir / LAYER_NAME)]))


def _load(engine: Engine, archive: Iterable[bytes]) -> str:
    """Ctrl-C while the archive streams cuts the upload off, and the engine loads nothing from a cut-off
    archive; once its last chunk is on the way, the engine's answer is waited for, as the image it makes
    is ours to remove. An error of ours while streaming is the one raised, not the failed upload it causes."""
    with deferred_interrupts() as held:
        upload = _Upload(archive, held)
        try:
            return engine.load_image(upload)
        except BaseException as failure:
            if upload.error is None or upload.error is failure:
                raise
            raise upload.error from None


class _Upload:
    def __init__(self, archive: Iterable[bytes], held: HeldInterrupts):
        self._archive = archive
        self._held = held
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._archive:
                self._held.raise_pending()
                yield chunk
        except Exception as error:  # an interrupt passes through the engine's client as it is
            self.error = error
            raise
