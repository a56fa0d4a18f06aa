"""The slimmed image: first a plan (a value, no I/O), then a reproducible layer, then a loaded image.

Same plan => same layer bytes => same diff_id: nothing here reads the clock, and the layer's entries carry
the original metadata (mode, owner, mtime, xattrs, device numbers) rather than the host's.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, BinaryIO, Iterable, Iterator, Mapping

from .closure import kept_entry
from slim.engine import Engine
from slim.errors import SlimError
from slim.model import ROOT, BuiltImage, Closure, EntryKind, FileEntry, ImageFacts, ImagePlan
from slim.ownership import deferred_interrupts
from slim.image.rootfs import CHUNK, XATTR_RECORD, RootFS
from slim.image.sparse import zeros_as_holes
from .sizes import pushed_gzip

SOURCE_LABEL = "io.slimtrace.source-image"
# What `docker inspect` adds to an image's Config but the image config JSON does not hold (run-time state).
RUNTIME_CONFIG_KEYS = frozenset(
    {"Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce", "Image"}
)
LAYER_NAME = "layer.tar"  # the slimmed layer, as build_image leaves it in its workdir
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
class LayerInfo:
    diff_id: str  # "sha256:<hex of the uncompressed tar>"
    size: int  # uncompressed tar bytes
    compressed_size: int  # the same tar gzip-compressed
    files: int  # tar entries of every kind


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


def write_layer(plan: ImagePlan, rootfs: RootFS, out: BinaryIO) -> LayerInfo:
    """Write the plan as one uncompressed PAX tar; digest and gzip size are measured on the way out."""
    sink = _MeasuringSink(out)
    kept = {entry.path for entry in plan.entries}
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8", copybufsize=CHUNK) as tar:
        for entry in plan.entries:
            _add_entry(tar, entry, rootfs, kept, plan.contents)
    return sink.measured(files=len(plan.entries))


def _add_entry(
    tar: tarfile.TarFile,
    entry: FileEntry,
    rootfs: RootFS,
    kept: set[PurePosixPath],
    contents: Mapping[PurePosixPath, bytes],
) -> None:
    info = _tar_header(entry)
    first_name = next(path for path in (*entry.hardlink_group, entry.path) if path in kept)
    if first_name != entry.path:
        # Another kept name of this inode came earlier (both orders are by path): store the bytes once.
        info.type, info.linkname, info.size = tarfile.LNKTYPE, _member_name(first_name), 0
        tar.addfile(info)
    elif entry.path in contents:
        tar.addfile(info, io.BytesIO(contents[entry.path]))
    elif entry.kind is EntryKind.FILE:
        with rootfs.open(entry.path) as data:
            tar.addfile(info, data)
    else:
        tar.addfile(info)


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


class _MeasuringSink:
    """Passes the tar on to `out` while hashing it and counting what gzip would make of it."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self._sha256 = hashlib.sha256()
        self._gzip = pushed_gzip()  # only ever counted
        self._size = 0
        self._compressed = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._sha256.update(data)
        self._compressed += len(self._gzip.compress(data))
        self._size += len(data)
        return len(data)

    def tell(self) -> int:
        return self._size

    def measured(self, files: int) -> LayerInfo:
        self._compressed += len(self._gzip.flush())
        return LayerInfo(f"sha256:{self._sha256.hexdigest()}", self._size, self._compressed, files)


# ---------------------------------------------------------------- the image


def image_archive(plan: ImagePlan, layer_path: Path, layer: LayerInfo, work_tag: str) -> Iterator[bytes]:
    """The image as a `docker save` tar stream, tagged only with the build's work tag (the user's tag
    comes after verification)."""
    config = _json(_image_config(plan, layer))
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    layer_name = f"{layer.diff_id.removeprefix('sha256:')}/layer.tar"
    manifest = _json([{"Config": config_name, "Layers": [layer_name], "RepoTags": [work_tag]}])
    yield from _archive_member(config_name, [config], len(config))
    with layer_path.open("rb") as data:
        yield from _archive_member(layer_name, iter(lambda: data.read(CHUNK), b""), layer.size)
    yield from _archive_member("manifest.json", [manifest], len(manifest))
    yield tarfile.NUL * (2 * tarfile.BLOCKSIZE)  # end of archive


def _image_config(plan: ImagePlan, layer: LayerInfo) -> Mapping[str, Any]:
    return {
        "architecture": plan.architecture,
        "os": plan.os,
        "config": plan.config,
        "created": plan.created,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": plan.created, "created_by": f"slimtrace: minified from {plan.source_id}"}],
    }


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _archive_member(name: str, chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, ARCHIVE_MTIME
    yield info.tobuf(tarfile.PAX_FORMAT, "utf-8")
    yield from chunks
    yield tarfile.NUL * (-size % tarfile.BLOCKSIZE)


def build_image(engine: Engine, plan: ImagePlan, rootfs: RootFS, workdir: Path, work_tag: str) -> BuiltImage:
    """Write the layer and load the image tagged `work_tag` (see slim.ownership: that tag, not a flag of
    ours, is what makes the image this build's until it is handed over)."""
    workdir.mkdir(parents=True, exist_ok=True)
    layer_path = workdir / LAYER_NAME
    with layer_path.open("wb") as out, zeros_as_holes(out) as sparse:
        layer = write_layer(plan, rootfs, sparse)
    # Once the whole archive is sent the engine loads it: wait for its answer even if interrupted.
    with deferred_interrupts():
        image_id = engine.load_image(image_archive(plan, layer_path, layer, work_tag))
    return BuiltImage(
        id=image_id,
        layer_diff_id=layer.diff_id,
        layer_size=layer.size,
        compressed_size=layer.compressed_size,
        size=engine.inspect_image(image_id).size,
        files=layer.files,
    )
