"""read_elf against GNU readelf on real host binaries, plus binaries built here with known answers."""
import io
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from slim.image.elf import ELF_MAGIC, ElfInfo, MalformedElf, read_elf
from tests.helpers import build_tiny_app, fake_elf32, gcc

SAMPLE_PER_DIRECTORY = 60
# Host binaries known to carry DT_RUNPATH on Debian (systemd tools, man-db), so the comparison with
# readelf covers search paths too when they are installed.
WITH_RUNPATH = ("/usr/bin/man", "/usr/bin/busctl")
def host_elfs() -> list[str]:
    """An evenly spread sample of the host's executables and libraries (real files, not symlinks)."""
    sample = []
    for pattern in ("/usr/bin/*", "/usr/lib/x86_64-linux-gnu/*.so*"):
        files = sorted(p for p in Path("/").glob(pattern.lstrip("/")) if p.is_file() and not p.is_symlink())
        elfs = [str(p) for p in files if starts_with_magic(p)]
        step = max(1, len(elfs) // SAMPLE_PER_DIRECTORY)
        sample += elfs[::step]
    return sample + [p for p in WITH_RUNPATH if Path(p).is_file() and p not in sample]


def starts_with_magic(path: Path) -> bool:
    with open(path, "rb") as stream:
        return stream.read(len(ELF_MAGIC)) == ELF_MAGIC


def dynamic_segment(path: str) -> tuple[int, int]:
    """(file offset, size) of PT_DYNAMIC, located with pyelftools' own segment reader."""
    with open(path, "rb") as stream:
        segment = next(ELFFile(stream).iter_segments("PT_DYNAMIC"))
        return segment["p_offset"], segment["p_filesz"]


def readelf(path: Path | str) -> dict:
    """What GNU readelf says about the fields ElfInfo carries."""
    out = subprocess.run(
        ["readelf", "-h", "-d", "-l", "-W", str(path)],
        capture_output=True, text=True, check=True, env={"LC_ALL": "C"},
    ).stdout
    tags: dict[str, list[str]] = {}
    for tag, value in re.findall(r"\((NEEDED|RPATH|RUNPATH|SONAME)\)\s+[^\[]*\[(.*)\]", out):
        tags.setdefault(tag, []).append(value)
    interp = re.search(r"\[Requesting program interpreter: (.*)\]", out)
    return {
        "interp": interp[1] if interp else None,
        "needed": tuple(tags.get("NEEDED", ())),
        "rpath": tuple(p for v in tags.get("RPATH", ()) for p in v.split(":") if p),
        "runpath": tuple(p for v in tags.get("RUNPATH", ()) for p in v.split(":") if p),
        "soname": tags["SONAME"][0] if "SONAME" in tags else None,
        "elf_class": int(re.search(r"Class:\s+ELF(32|64)", out)[1]),
    }


def read_path(path: Path | str) -> ElfInfo | None:
    with open(path, "rb") as stream:
        return read_elf(stream, path)


def as_readelf_sees_it(info: ElfInfo) -> dict:
    fields = ("interp", "needed", "rpath", "runpath", "soname", "elf_class")
    return {name: getattr(info, name) for name in fields}


@pytest.mark.parametrize("path", host_elfs())
def test_matches_readelf(path):
    assert as_readelf_sees_it(read_path(path)) == readelf(path)


def test_sample_is_large_and_covers_search_paths():
    sample = host_elfs()
    assert len(sample) >= 50
    if not any(Path(p).is_file() for p in WITH_RUNPATH):
        pytest.skip("no host binary with a search path installed")
    assert any(read_path(p).runpath or read_path(p).rpath for p in sample)


def test_ls_fields():
    info = read_path("/usr/bin/ls")
    assert info.interp == "/lib64/ld-linux-x86-64.so.2"
    assert "libc.so.6" in info.needed
    assert (info.elf_class, info.machine, info.is_static) == (64, "EM_X86_64", False)


def test_loader_itself_is_static():
    info = read_path(Path("/lib64/ld-linux-x86-64.so.2").resolve())
    assert info.interp is None and info.needed == () and info.is_static


def test_stripped_binary(tmp_path):
    copy = tmp_path / "ls"
    shutil.copy("/usr/bin/ls", copy)
    subprocess.run(["strip", "--strip-all", copy], check=True)
    assert as_readelf_sees_it(read_path(copy)) == readelf(copy)
    assert read_path(copy) == read_path("/usr/bin/ls")


def test_binary_without_section_headers():
    """The loader never reads section headers; neither do we (as after sstrip, or when they are junk)."""
    data = bytearray(Path("/usr/bin/ls").read_bytes())
    struct.pack_into("<Q", data, 0x28, len(data) + 4096)  # e_shoff: past the end of the file
    struct.pack_into("<HH", data, 0x3C, 0xFFF, 0xFFE)  # e_shnum, e_shstrndx: nonsense
    assert read_elf(io.BytesIO(bytes(data)), "ls") == read_path("/usr/bin/ls")


@pytest.mark.parametrize("cut", ["5", "20", "63", "100", "1000", "dynamic+8"])
def test_truncated_elf_is_malformed(tmp_path, cut):
    size = dynamic_segment("/usr/bin/ls")[0] + 8 if cut == "dynamic+8" else int(cut)
    truncated = tmp_path / "ls"
    truncated.write_bytes(Path("/usr/bin/ls").read_bytes()[:size])
    with pytest.raises(MalformedElf) as caught:
        read_path(truncated)
    assert caught.value.path == truncated
    assert str(truncated) in caught.value.message


def test_dynamic_string_offset_out_of_range_is_malformed():
    data = bytearray(Path("/usr/bin/ls").read_bytes())
    offset, size = dynamic_segment("/usr/bin/ls")
    needed = next(n for n in range(offset, offset + size, 16) if struct.unpack_from("<q", data, n)[0] == 1)
    struct.pack_into("<Q", data, needed + 8, 0xFFFFFF)  # DT_NEEDED's name offset (DT_NEEDED = 1)
    with pytest.raises(MalformedElf, match="outside the dynamic string table"):
        read_elf(io.BytesIO(bytes(data)), "ls")


def test_wrong_program_header_entry_size_is_malformed():
    data = bytearray(Path("/usr/bin/ls").read_bytes())
    struct.pack_into("<H", data, 0x36, 50)  # e_phentsize; the kernel only execs sizeof(Elf64_Phdr) = 56
    with pytest.raises(MalformedElf, match="program header entries of 50 bytes"):
        read_elf(io.BytesIO(bytes(data)), "ls")


@pytest.mark.parametrize("content", [b"", b"\x7fEL", b"#!/bin/sh\necho hi\n", b"root:x:0:0::/root:/bin/sh\n"])
def test_not_elf_is_none(content):
    assert read_elf(io.BytesIO(content), "file") is None


def test_runpath_origin_binary(tmp_path):
    app, lib = build_tiny_app(tmp_path, "-Wl,-rpath,$ORIGIN/lib", "-Wl,--enable-new-dtags")
    subprocess.run([app], check=True)  # the real loader agrees: $ORIGIN/lib finds libtiny
    info = read_path(app)
    assert info.runpath == ("$ORIGIN/lib",) and info.rpath == ()
    assert info.needed[0] == "libtiny.so.1" and "libc.so.6" in info.needed
    assert read_path(lib).soname == "libtiny.so.1"
    assert as_readelf_sees_it(info) == readelf(app)


def test_rpath_binary(tmp_path):
    app, _ = build_tiny_app(tmp_path, "-Wl,-rpath,$ORIGIN/lib:/opt/x", "-Wl,--disable-new-dtags")
    subprocess.run([app], check=True)
    info = read_path(app)
    assert info.rpath == ("$ORIGIN/lib", "/opt/x") and info.runpath == ()
    assert as_readelf_sees_it(info) == readelf(app)


def test_static_binary(tmp_path):
    static = gcc(tmp_path / "s", "int main(void) { return 0; }\n", "-static")
    info = read_path(static)
    assert info.is_static and info.interp is None and info.needed == ()


def test_fake_32_bit_header():
    info = read_elf(io.BytesIO(fake_elf32()), "libc.so.6")
    assert (info.elf_class, info.machine, info.needed) == (32, "EM_386", ())
