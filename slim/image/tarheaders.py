"""A layer tar's members as the index needs them: one struct unpack a 512-byte header, member data skipped.

tarfile parses each header field by field in Python and checks two checksums; over 100,000 small files
that was most of an image's index. `read_members` reads the header forms layer tars are made of (ustar,
GNU and POSIX pax; long names either way; pax xattrs) with tarfile's rules, and raises UnusualTar at
anything else (a global pax header, a sparse file, a malformed pax record, a bad checksum, a short read):
the caller then reads that tar with `tarfile_members`, which knows every form and its errors.
tests/test_tarheaders.py holds the two to the same answers.
"""
from __future__ import annotations

import re
import struct
import tarfile
from collections.abc import Iterable, Iterator
from types import MappingProxyType
from typing import BinaryIO, Mapping, NamedTuple

BLOCK = 512
END_OF_ARCHIVE = bytes(BLOCK)
XATTR_RECORD = "SCHILY.xattr."
NO_XATTRS: Mapping[str, bytes] = MappingProxyType({})
# name, mode, uid, gid, size, mtime, chksum, type, linkname, (magic, version), uname, gname, devmajor,
# devminor, prefix, (padding)
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8x32s32s8s8s155s12x")
_DATA_TYPES = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE})  # members followed by their bytes
_PLAIN_TYPES = _DATA_TYPES | {tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE,
                              tarfile.FIFOTYPE}
_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")  # tarfile's: "%d %s=%s\n" (length, keyword, value)
_PAX_NUMBERS = {"uid": int, "gid": int, "size": int, "mtime": float}


class UnusualTar(Exception):
    """A header form `read_members` leaves to tarfile."""


class TarMember(NamedTuple):
    """What the index keeps of a member: its header fields as tarfile reads them (mtime in whole seconds)."""

    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int
    linkname: str
    devmajor: int
    devminor: int
    uname: str
    gname: str
    xattrs: Mapping[str, bytes]
    offset_data: int  # where its bytes start in the tar
    sparse: bool = False


def read_members(tar: BinaryIO) -> Iterator[TarMember]:
    """The members of a seekable tar, in order, reading headers only."""
    headers = _Headers(tar)
    offset = 0
    while (found := headers.member_at(offset)) is not None:
        member, offset = found
        yield member


def tarfile_members(tar: BinaryIO) -> Iterator[TarMember]:
    """The members as tarfile reads them: every header form, and tarfile's own errors."""
    with tarfile.open(fileobj=tar, mode="r:", encoding="utf-8", errors="surrogateescape") as archive:
        for info in archive:
            records = ((record, value.encode("utf-8", "surrogateescape"))  # tarfile decoded the PAX bytes
                       for record, value in info.pax_headers.items())
            yield TarMember(info.name, info.type, info.mode, info.uid, info.gid, int(info.mtime), info.size,
                            info.linkname, info.devmajor, info.devminor, info.uname, info.gname,
                            _xattrs(records), info.offset_data, info.issparse())


def _xattrs(records: Iterable[tuple[str, bytes]]) -> Mapping[str, bytes]:
    """The extended attributes among a member's PAX records."""
    found = {keyword[len(XATTR_RECORD):]: value for keyword, value in records if keyword.startswith(XATTR_RECORD)}
    return MappingProxyType(found) if found else NO_XATTRS


class _Headers:
    def __init__(self, tar: BinaryIO):
        self._tar = tar
        # Header fields repeat from member to member (modes, owners, their names): each is decoded once.
        self._numbers: dict[bytes, int] = {}
        self._names: dict[bytes, str] = {}

    def member_at(self, offset: int) -> tuple[TarMember, int] | None:
        """The member whose first header is at `offset`, and where the next one starts; None at the end
        of the archive."""
        self._tar.seek(offset)
        header = self._tar.read(BLOCK)
        if header == END_OF_ARCHIVE:
            return None
        if len(header) != BLOCK:
            raise UnusualTar("short header")
        (name, mode, uid, gid, size, mtime, chksum, kind, linkname, uname, gname, devmajor, devminor,
         prefix) = _HEADER.unpack(header)
        if self._number(chksum) != sum(header) - sum(chksum) + 256:
            raise UnusualTar("checksum")  # or a signed one (old Sun tars): tarfile knows
        size_ = self._number(size)
        if kind in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE):
            data = self._tar.read(_padded(size_))
            found = self.member_at(offset + BLOCK + _padded(size_))
            if found is None:
                raise UnusualTar("the archive ends after an extended header")  # tarfile: an error
            member, end = found
            if kind == tarfile.XHDTYPE:
                return _with_pax(member, end, _pax_records(data))
            text = _text(data)
            member = member._replace(**{"linkname" if kind == tarfile.GNUTYPE_LONGLINK else "name": text})
            if member.type == tarfile.DIRTYPE:
                member = member._replace(name=member.name.removesuffix("/"))  # as tarfile's _proc_gnulong
            return member, end
        if kind not in _PLAIN_TYPES:
            raise UnusualTar(f"member type {kind!r}")
        path = _text(name)
        if kind == tarfile.AREGTYPE and path.endswith("/"):
            kind = tarfile.DIRTYPE  # the old V7 form of a directory
        if kind == tarfile.DIRTYPE:
            path = path.rstrip("/")
        if head := _text(prefix):
            path = head + "/" + path
            if kind == tarfile.DIRTYPE:
                path = path.rstrip("/")
        data_at = offset + BLOCK
        member = TarMember(path, kind, self._number(mode), self._number(uid), self._number(gid), self._number(mtime),
                           size_, _text(linkname), self._number(devmajor), self._number(devminor),
                           self._name(uname), self._name(gname), NO_XATTRS, data_at)
        return member, data_at + (_padded(size_) if kind in _DATA_TYPES else 0)

    def _number(self, field: bytes) -> int:
        number = self._numbers.get(field)
        if number is None:
            try:
                number = self._numbers[field] = tarfile.nti(field)
            except tarfile.InvalidHeaderError:
                raise UnusualTar("number field") from None
        return number

    def _name(self, field: bytes) -> str:
        text = self._names.get(field)
        if text is None:
            text = self._names[field] = _text(field)
        return text


def _with_pax(member: TarMember, end: int, records: dict[str, bytes]) -> tuple[TarMember, int]:
    """tarfile's _apply_pax_info: the extended header's fields over the next header's."""
    if any(keyword.startswith("GNU.sparse.") for keyword in records):
        raise UnusualTar("sparse file")
    fields: dict[str, object] = {}
    for keyword, value in records.items():
        if keyword in _PAX_NUMBERS:
            fields[keyword] = _pax_number(keyword, value)
        elif keyword == "path":
            fields["name"] = value.decode("utf-8", "surrogateescape").rstrip("/")
        elif keyword == "linkpath":
            fields["linkname"] = value.decode("utf-8", "surrogateescape")
        elif keyword in ("uname", "gname"):
            fields[keyword] = value.decode("utf-8", "surrogateescape")
    member = member._replace(**fields, xattrs=_xattrs(records.items()))  # type: ignore[arg-type]
    if "size" in fields and member.type in _DATA_TYPES:
        end = member.offset_data + _padded(member.size)
    return member, end


def _pax_number(keyword: str, value: bytes) -> int:
    """A number record as tarfile reads it (0 when unreadable), in whole seconds for mtime."""
    try:
        number = _PAX_NUMBERS[keyword](value.decode("utf-8", "surrogateescape"))
    except ValueError:
        return 0
    try:
        return int(number)
    except (ValueError, OverflowError):  # an mtime of inf or nan: left to tarfile, whose answer fails as before
        raise UnusualTar(f"pax {keyword} {value!r}") from None


def _pax_records(data: bytes) -> dict[str, bytes]:
    """An extended header's records, keyword -> value as stored (tarfile's parse, values left as bytes).

    A hdrcharset record changes nothing here: with BINARY, tarfile decodes path, linkpath, uname and gname
    in the archive's encoding, which `tarfile_members` gives as UTF-8 with surrogateescape, as for any
    other record. A record whose framing is off (no newline where its length ends, or past the header) is
    left to tarfile: Python versions differ in what they make of it."""
    records = {}
    position = 0
    while match := _PAX_RECORD.match(data, position):
        end = match.start(1) + int(match[1])
        if end <= match.end(2) or end > len(data) or data[end - 1] != 0x0A:
            raise UnusualTar("malformed pax record")
        records[match[2].decode("utf-8", "surrogateescape")] = data[match.end(2) + 1:end - 1]
        position = end
    if data[position:].strip(b"\0"):
        raise UnusualTar("malformed pax record")
    return records


def _text(field: bytes) -> str:
    """tarfile's nts: up to the first NUL, UTF-8 (undecodable bytes kept as surrogates)."""
    end = field.find(b"\0")
    return (field if end == -1 else field[:end]).decode("utf-8", "surrogateescape")


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK
