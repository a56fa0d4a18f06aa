"""A layer read in place from the engine's storage: the very tar `docker save` would stream, never copied.

The engine keeps, for each layer, a tar-split record: the raw bytes of every tar header and padding, and
for each member with data its name and size. It streams a layer by sending those header bytes and, between
them, the bytes of each file from the layer's directory. `StoredLayerTar` is that stream as a seekable
file: the headers are written to a small spool file once (a few hundred bytes a member), the file bytes are
read from the layer's directory only when something reads them. Indexing the layer reads headers only, so
it costs what the image's metadata costs, and a kept file's bytes are the only ones read.
"""
from __future__ import annotations

import base64
import bisect
import gzip
import hashlib
import io
import json
import os
from pathlib import Path
from typing import BinaryIO

from slim.engine import StoredLayer
from slim.errors import ExitCode, SlimError

_FILE_ENTRY = 1  # tar-split's entry types: a member's data (name and size), and raw tar bytes
_SEGMENT = 2
_DIRECTORY_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class StoredLayerUnreadable(SlimError):
    """The engine's record of a layer does not match its directory, or cannot be read: the image was removed
    (`docker rmi -f`) or its storage changed since the build found it. Its own exit code, as a missing image's:
    building again from what the engine holds now is the remedy, not a bug report."""

    exit_code = ExitCode.IMAGE_NOT_FOUND

    def __init__(self, why: str):
        super().__init__(f"the image was removed or changed while slimtrace read it in place: {why}")


class StoredLayerTar:
    """One layer's tar, put together from the engine's tar-split record and the layer's directory."""

    def __init__(self, layer: StoredLayer, spool: Path):
        self.name = str(layer.diff)
        self._diff = layer.diff
        self._spool = spool
        self._starts: list[int] = []  # where each part of the tar starts
        self._parts: list[int | bytes] = []  # the spool offset of raw tar bytes, or a member's name
        self.size = self._index(layer.tar_split)

    def __str__(self) -> str:
        return self.name

    def reader(self) -> BinaryIO:
        """A seekable file over the whole tar; each reader has its own handles (one per thread). Buffered,
        as an open file is: a read returns all it asked for, across the parts of the tar."""
        return io.BufferedReader(_StoredReader(self, self._spool, self._diff))

    def _index(self, tar_split: Path) -> int:
        position = spooled = 0
        try:
            with gzip.open(tar_split, "rt", encoding="utf-8") as record, self._spool.open("wb") as spool:
                for line in record:
                    entry = json.loads(line)
                    if entry["type"] == _SEGMENT and entry.get("payload"):
                        data = base64.b64decode(entry["payload"])
                        self._add(position, spooled)
                        spool.write(data)
                        spooled += len(data)
                        position += len(data)
                    elif entry["type"] == _FILE_ENTRY and entry.get("size"):
                        self._add(position, _entry_name(entry))
                        position += entry["size"]
        except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
            raise StoredLayerUnreadable(f"layer {self._diff}: its tar-split record {tar_split}: {e}") from e
        return position

    def _add(self, start: int, part: int | bytes) -> None:
        self._starts.append(start)
        self._parts.append(part)

    def part_at(self, position: int) -> tuple[int, int, int | bytes]:
        """(start, end, part) of the part holding byte `position` of the tar."""
        index = bisect.bisect_right(self._starts, position) - 1
        end = self._starts[index + 1] if index + 1 < len(self._starts) else self.size
        return self._starts[index], end, self._parts[index]


def _entry_name(entry: dict) -> bytes:
    # A name that is not UTF-8 comes base64-encoded as name_raw (JSON strings cannot carry it).
    return base64.b64decode(entry["name_raw"]) if entry.get("name_raw") else entry["name"].encode()


class SeekableReader(io.RawIOBase):
    """A read-only file of `size` bytes: subclasses read from `_position` on."""

    def __init__(self, size: int):
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        origin = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        if origin + offset < 0:
            raise ValueError("negative seek position")
        self._position = origin + offset
        return self._position

    def tell(self) -> int:
        return self._position


class _StoredReader(SeekableReader):
    def __init__(self, layer: StoredLayerTar, spool: Path, diff: Path):
        super().__init__(layer.size)
        self._layer = layer
        self._spool = os.open(spool, os.O_RDONLY | os.O_CLOEXEC)
        self._diff = diff
        self._member: tuple[bytes, int] | None = None  # the member file open now, and its descriptor

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self._position >= self._size or not len(buffer):
            return 0
        start, end, part = self._layer.part_at(self._position)
        wanted = min(len(buffer), end - self._position)
        within = self._position - start
        if isinstance(part, int):
            data = os.pread(self._spool, wanted, part + within)
        else:
            data = os.pread(self._member_fd(part, end - start), wanted, within)
        if len(data) != wanted:
            raise StoredLayerUnreadable(f"layer {self._diff}: {_shown(part)} is shorter than the engine recorded")
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _member_fd(self, name: bytes, size: int) -> int:
        if self._member is None or self._member[0] != name:
            self._close_member()
            fd = _open_beneath(self._diff, name)
            self._member = (name, fd)
            if os.fstat(fd).st_size != size:
                raise StoredLayerUnreadable(
                    f"layer {self._diff}: {_shown(name)} is not the size the engine recorded (changed under it?)"
                )
        return self._member[1]

    def _close_member(self) -> None:
        if self._member is not None:
            os.close(self._member[1])
            self._member = None

    def close(self) -> None:
        if not self.closed:
            self._close_member()
            os.close(self._spool)
        super().close()


def _open_beneath(directory: Path, name: bytes) -> int:
    """Open `name` below `directory` without following any symlink: the layer's own files, never a host path
    a link in the layer points to."""
    names = [part for part in name.split(b"/") if part and part != b"."]
    if not names or b".." in names:
        raise StoredLayerUnreadable(f"layer {directory}: the member name {_shown(name)} leaves the layer")
    opened: list[int] = []
    try:
        # The layer's directory too: it is gone once the image is removed (`docker rmi -f`).
        opened.append(os.open(directory, _DIRECTORY_FLAGS))
        for part in names[:-1]:
            opened.append(os.open(part, _DIRECTORY_FLAGS, dir_fd=opened[-1]))
        return os.open(names[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=opened[-1])
    except OSError as e:
        raise StoredLayerUnreadable(f"layer {directory}: {_shown(name)}: {e.strerror}") from e
    finally:
        for fd in opened:
            os.close(fd)


def _shown(name: int | bytes) -> str:
    return os.fsdecode(name) if isinstance(name, bytes) else f"tar bytes at {name}"


def read_config(path: Path, image_id: str) -> dict:
    """The image config the engine stores, checked against the image id it is the digest of."""
    try:
        data = path.read_bytes()
        config = json.loads(data)
    except (OSError, ValueError) as e:
        raise StoredLayerUnreadable(f"image {image_id}: its config {path}: {e}") from e
    if hashlib.sha256(data).hexdigest() != image_id.removeprefix("sha256:"):
        raise StoredLayerUnreadable(f"image {image_id}: {path} is not its config")
    if not isinstance(config, dict):
        raise StoredLayerUnreadable(f"image {image_id}: {path} is not a JSON object")
    return config
