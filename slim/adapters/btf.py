"""Where the running kernel keeps a few fields of its own structures, read from its BTF
(/sys/kernel/btf/vmlinux: the type information the kernel carries about itself).

The eBPF lookup tracer walks from a process's working directory (or a directory fd) up to its root to
name the directory a relative path starts from, while the call runs: read later from /proc, it would be
gone with a process that has exited. The fields' offsets change from one kernel build to the next, so
they are looked up here, once per kernel (cached: the parse takes a few tenths of a second).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
_MAGIC = 0xEB9F
_HEADER = struct.Struct("=HBBIIIII")
_TYPE = struct.Struct("=III")
_MEMBER = struct.Struct("=III")
_STRUCT, _UNION = 4, 5
# Bytes that follow a type's common part: fixed, or per member (vlen), by kind (<linux/btf.h>).
_FIXED = {1: 4, 3: 12, 14: 4, 17: 4}
_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}


class BtfUnavailable(Exception):
    """The kernel carries no BTF, or not the fields asked for."""


def field_offsets(wanted: dict[str, tuple[str, ...]], cache: Path, btf: Path = VMLINUX) -> dict[str, int]:
    """{"struct.field": byte offset} for each struct's fields (a field inside an anonymous struct or
    union member counts as the struct's own), from the kernel's BTF; cached in `cache`."""
    try:
        stat = btf.stat()
    except OSError as why:
        raise BtfUnavailable(f"no kernel BTF ({btf}: {why.strerror})") from why
    key = hashlib.sha256(repr((os.uname().release, stat.st_size, stat.st_mtime_ns, sorted(wanted.items())))
                         .encode()).hexdigest()[:16]
    cached = cache / f"btf-offsets-{key}.json"
    try:
        return json.loads(cached.read_text())
    except (OSError, ValueError):
        pass
    try:
        offsets = _parse(btf.read_bytes(), wanted)
    except (OSError, struct.error, ValueError) as why:
        raise BtfUnavailable(f"the kernel's BTF cannot be read ({why})") from why
    partial = cached.with_name(f".{cached.name}.{os.getpid()}")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(offsets))
        os.replace(partial, cached)
    except OSError:  # an unwritable cache costs the parse next time, nothing more
        with contextlib.suppress(OSError):
            partial.unlink()
    return offsets


def _parse(data: bytes, wanted: dict[str, tuple[str, ...]]) -> dict[str, int]:
    magic, _version, _flags, header_length, type_off, type_len, str_off, _str_len = _HEADER.unpack_from(data, 0)
    if magic != _MAGIC:
        raise BtfUnavailable("the kernel's BTF has an unknown format")
    strings = header_length + str_off
    types = _types(data, header_length + type_off, header_length + type_off + type_len)

    def name(offset: int) -> str:
        return data[strings + offset:data.index(b"\0", strings + offset)].decode()

    offsets = {}
    for struct_name, fields in wanted.items():
        members = next((members for kind, name_off, members in types
                        if kind == _STRUCT and members and name(name_off) == struct_name), None)
        if members is None:
            raise BtfUnavailable(f"the kernel's BTF has no struct {struct_name}")
        for field in fields:
            found = _find(field, members, types, name)
            if found is None:
                raise BtfUnavailable(f"the kernel's BTF has no {struct_name}.{field}")
            offsets[f"{struct_name}.{field}"] = found
    return offsets


def _types(data: bytes, start: int, end: int) -> list[tuple[int, int, list[tuple[int, int, int]]]]:
    """Every type by id (id 0 is void): (kind, name offset, members as (name offset, type id, bit offset))."""
    types = [(0, 0, [])]
    at = start
    while at < end:
        name_off, info, _size = _TYPE.unpack_from(data, at)
        kind, count, bitfields = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        at += _TYPE.size
        members = []
        if kind in (_STRUCT, _UNION):
            for index in range(count):
                member_name, member_type, offset = _MEMBER.unpack_from(data, at + index * _MEMBER.size)
                members.append((member_name, member_type, offset & 0xFFFFFF if bitfields else offset))
        at += _FIXED.get(kind, 0) + _PER_MEMBER.get(kind, 0) * count
        types.append((kind, name_off, members))
    return types


def _find(field: str, members, types, name) -> int | None:
    for member_name, member_type, bit_offset in members:
        if member_name and name(member_name) == field:
            return bit_offset // 8
        if not member_name:  # an anonymous struct or union: its fields are the outer one's
            inner = _find(field, types[member_type][2], types, name)
            if inner is not None:
                return bit_offset // 8 + inner
    return None
