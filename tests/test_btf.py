"""Field offsets from BTF: the running kernel's own, and hand-made type information for the parts a
real kernel may or may not exercise (an anonymous union, a missing struct, the cache)."""
from __future__ import annotations

import os
import struct

import pytest

from slim.adapters.btf import VMLINUX, BtfUnavailable, field_offsets

STRUCT, UNION, INT = 4, 5, 1


def btf_blob(types: list[tuple[str, int, list[tuple[str, int, int]]]]) -> bytes:
    """A BTF image of `types` (name, kind, members as (name, type id, bit offset)); type 1 is an int."""
    strings = bytearray(b"\0")

    def name(text: str) -> int:
        if not text:
            return 0
        strings.extend(text.encode() + b"\0")
        return len(strings) - len(text) - 1

    body = bytearray(struct.pack("=III", name("int"), INT << 24, 4) + struct.pack("=I", 32))
    for type_name, kind, members in types:
        body += struct.pack("=III", name(type_name), kind << 24 | len(members), 16)
        for member_name, member_type, offset in members:
            body += struct.pack("=III", name(member_name), member_type, offset)
    header = struct.pack("=HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body), len(strings))
    return header + bytes(body) + bytes(strings)


# type 2: an anonymous union of `hash_len` and `len`; type 3: struct qstr { union {...}; name at byte 8 }
QSTR = btf_blob([
    ("", UNION, [("hash_len", 1, 0), ("len", 1, 32)]),
    ("qstr", STRUCT, [("", 2, 0), ("name", 1, 64)]),
])


@pytest.mark.skipif(not VMLINUX.exists(), reason="this kernel carries no BTF")
def test_the_running_kernels_offsets_are_found(tmp_path):
    offsets = field_offsets({"path": ("mnt", "dentry"), "qstr": ("name",)}, tmp_path)
    # struct path { struct vfsmount *mnt; struct dentry *dentry; } and qstr's name after its hash_len:
    # fixed on every 64-bit kernel.
    assert offsets == {"path.mnt": 0, "path.dentry": 8, "qstr.name": 8}


def test_a_field_inside_an_anonymous_union_is_the_structs_own(tmp_path):
    btf = tmp_path / "vmlinux"
    btf.write_bytes(QSTR)
    assert field_offsets({"qstr": ("len", "name")}, tmp_path / "cache", btf) == {"qstr.len": 4, "qstr.name": 8}


def test_a_struct_or_field_the_kernel_lacks_is_unavailable(tmp_path):
    btf = tmp_path / "vmlinux"
    btf.write_bytes(QSTR)
    with pytest.raises(BtfUnavailable, match="no struct dentry"):
        field_offsets({"dentry": ("d_parent",)}, tmp_path / "cache", btf)
    with pytest.raises(BtfUnavailable, match="no qstr.hash"):
        field_offsets({"qstr": ("hash",)}, tmp_path / "cache", btf)
    with pytest.raises(BtfUnavailable, match="no kernel BTF"):
        field_offsets({"qstr": ("name",)}, tmp_path / "cache", tmp_path / "absent")


def test_offsets_are_read_once_per_kernel_then_from_the_cache(tmp_path):
    btf = tmp_path / "vmlinux"
    btf.write_bytes(QSTR)
    first = field_offsets({"qstr": ("name",)}, tmp_path / "cache", btf)
    stat = btf.stat()
    btf.write_bytes(b"\0" * len(QSTR))  # unreadable as BTF, same size and time: the cache answers
    os.utime(btf, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert field_offsets({"qstr": ("name",)}, tmp_path / "cache", btf) == first


def test_a_cache_that_cannot_be_written_costs_only_the_parse(tmp_path):
    btf = tmp_path / "vmlinux"
    btf.write_bytes(QSTR)
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    assert field_offsets({"qstr": ("name",)}, not_a_directory / "cache", btf) == {"qstr.name": 8}
