"""What the dynamic loader reads from an ELF file: its interpreter, needed libraries and search paths.

Only the ELF header, the program headers, PT_INTERP and PT_DYNAMIC are read, exactly the parts ld.so
and the kernel use. Section headers are never touched: stripped (or section-less) binaries run fine,
so they must parse fine, and a binary with damaged section headers still runs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from elftools.common.exceptions import ELFError

from slim.errors import SlimError

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

ELF_MAGIC = b"\x7fELF"
STRING_LIMIT = 4096  # PATH_MAX: no name or search path the loader accepts is longer


class MalformedElf(SlimError):
    """A file starts like an ELF but its headers or dynamic table cannot be read."""

    def __init__(self, path: PurePosixPath | str, why: str):
        super().__init__(f"malformed ELF {path}: {why}")
        self.path = path
        self.why = why


@dataclass(frozen=True)
class ElfInfo:
    interp: str | None  # PT_INTERP: the program interpreter (dynamic loader) path
    needed: tuple[str, ...]  # DT_NEEDED, in file order (the loader's order)
    rpath: tuple[str, ...]  # DT_RPATH entries split on ":", unexpanded ($ORIGIN kept as written)
    runpath: tuple[str, ...]  # DT_RUNPATH, same form
    soname: str | None
    elf_class: int  # 32 or 64
    machine: str  # pyelftools' e_machine name, e.g. "EM_X86_64"
    # Needs neither a loader nor libraries (static executables, static-pie, ld.so itself).
    is_static: bool


@dataclass(frozen=True)
class _Segment:
    kind: str  # p_type name, e.g. "PT_LOAD"
    offset: int
    vaddr: int
    filesz: int


def read_elf(stream: BinaryIO, path: PurePosixPath | str) -> ElfInfo | None:
    """Parse `stream` as the loader would; None when it is not an ELF file at all."""
    stream.seek(0)
    if stream.read(len(ELF_MAGIC)) != ELF_MAGIC:
        return None
    # Imported here: pyelftools' parser is 40 ms of imports, an eighth of slimtrace's start-up, which commands
    # that read no ELF file (report, explain, gc, --help) need not pay.
    from elftools.elf.elffile import ELFFile

    try:
        return _parse(ELFFile(stream), stream)
    except (ELFError, ValueError, IndexError) as e:  # pyelftools' own errors, plus bad offsets/enums
        raise MalformedElf(path, str(e) or type(e).__name__) from e


def _parse(elf: ELFFile, stream: BinaryIO) -> ElfInfo:
    segments = _segments(elf, stream)
    interp = next((_interp(stream, s) for s in segments if s.kind == "PT_INTERP"), None)
    dynamic = next((s for s in segments if s.kind == "PT_DYNAMIC"), None)
    strings = _dynamic_strings(elf, stream, dynamic, segments) if dynamic else {}
    needed = tuple(strings.get("DT_NEEDED", ()))
    return ElfInfo(
        interp=interp,
        needed=needed,
        rpath=_split_paths(strings.get("DT_RPATH", ())),
        runpath=_split_paths(strings.get("DT_RUNPATH", ())),
        soname=next(iter(strings.get("DT_SONAME", ())), None),
        elf_class=elf.elfclass,
        machine=str(elf["e_machine"]),
        is_static=interp is None and not needed,
    )


def _segments(elf: ELFFile, stream: BinaryIO) -> list[_Segment]:
    # Parsed from the program header table directly: ELFFile.iter_segments() builds a DynamicSegment
    # that scans the section headers, which the loader never reads.
    size = elf.stream_len
    phdr_size = elf.structs.Elf_Phdr.sizeof()
    if elf["e_phnum"] and elf["e_phentsize"] != phdr_size:  # the kernel refuses to exec these too
        raise ELFError(f"program header entries of {elf['e_phentsize']} bytes, not {phdr_size}")
    if elf["e_phoff"] + elf["e_phnum"] * phdr_size > size:
        raise ELFError("program header table extends past the end of the file")
    headers = (
        _record(elf.structs.Elf_Phdr, stream, elf["e_phoff"] + n * phdr_size) for n in range(elf["e_phnum"])
    )
    segments = [_Segment(str(h.p_type), h.p_offset, h.p_vaddr, h.p_filesz) for h in headers]
    for segment in segments:
        if segment.kind in ("PT_INTERP", "PT_DYNAMIC") and segment.offset + segment.filesz > size:
            raise ELFError(f"{segment.kind} extends past the end of the file")
    return segments


def _interp(stream: BinaryIO, segment: _Segment) -> str:
    return os.fsdecode(_cstring(stream, segment.offset, segment.filesz))


def _dynamic_strings(
    elf: ELFFile, stream: BinaryIO, dynamic: _Segment, segments: list[_Segment]
) -> dict[str, list[str]]:
    """The string-valued dynamic tags (NEEDED, RPATH, RUNPATH, SONAME), each in file order."""
    tags = _dynamic_tags(elf, stream, dynamic)
    wanted = [(tag, value) for tag, value in tags if tag in ("DT_NEEDED", "DT_RPATH", "DT_RUNPATH", "DT_SONAME")]
    if not wanted:
        return {}
    offset, size = _string_table(elf, tags, segments)
    strings: dict[str, list[str]] = {}
    for tag, value in wanted:
        if value >= size:
            raise ELFError(f"{tag} name offset {value} is outside the dynamic string table")
        strings.setdefault(tag, []).append(os.fsdecode(_cstring(stream, offset + value, size - value)))
    return strings


def _string_table(elf: ELFFile, tags: list[tuple[str, int]], segments: list[_Segment]) -> tuple[int, int]:
    """File offset and size of the dynamic string table, found through DT_STRTAB as the loader finds it."""
    table = {tag: value for tag, value in tags if tag in ("DT_STRTAB", "DT_STRSZ")}
    if "DT_STRTAB" not in table:
        raise ELFError("dynamic table has names but no DT_STRTAB")
    offset = _file_offset(segments, table["DT_STRTAB"])
    size = table.get("DT_STRSZ", elf.stream_len - offset)
    if offset + size > elf.stream_len:
        raise ELFError("dynamic string table extends past the end of the file")
    return offset, size


def _dynamic_tags(elf: ELFFile, stream: BinaryIO, dynamic: _Segment) -> list[tuple[str, int]]:
    entry_size = elf.structs.Elf_Dyn.sizeof()
    tags = []
    for n in range(dynamic.filesz // entry_size):
        entry = _record(elf.structs.Elf_Dyn, stream, dynamic.offset + n * entry_size)
        if entry.d_tag == "DT_NULL":
            break
        tags.append((str(entry.d_tag), entry.d_val))
    return tags


def _record(struct: Any, stream: BinaryIO, offset: int) -> Any:
    """One header of `struct`'s layout at `offset` (pyelftools' utils come with its parser, imported by then)."""
    from elftools.common.utils import struct_parse

    return struct_parse(struct, stream, offset)


def _file_offset(segments: list[_Segment], vaddr: int) -> int:
    """Map a virtual address to a file offset through the PT_LOAD segments, as the loader maps them."""
    for s in segments:
        if s.kind == "PT_LOAD" and s.vaddr <= vaddr < s.vaddr + s.filesz:
            return vaddr - s.vaddr + s.offset
    raise ELFError(f"address {vaddr:#x} is in no PT_LOAD segment")


def _cstring(stream: BinaryIO, offset: int, available: int) -> bytes:
    stream.seek(offset)
    data = stream.read(min(available, STRING_LIMIT + 1))
    end = data.find(b"\0")
    if end < 0:
        raise ELFError(f"unterminated string at offset {offset}")
    return data[:end]


def _split_paths(entries: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(part for entry in entries for part in entry.split(":") if part)
