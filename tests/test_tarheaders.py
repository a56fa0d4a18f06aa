"""The index's header reader (read_members) against tarfile (tarfile_members): real tars in every format
tarfile and GNU tar write, and every layer of real images, read into the same members field by field;
the forms it leaves to tarfile raise UnusualTar, and the index still reads them through tarfile."""
from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from slim.adapters.docker_engine import DockerEngine
from slim.image.rootfs import LayerTar, RootFS, UnreadableImage, layer_tar, source_image, spool_image
from slim.image.tarheaders import TarMember, UnusualTar, read_members, tarfile_members
from tests.helpers import CAPABILITY, directory, hardlink, member, symlink

P = PurePosixPath
LONG_DIR = "/".join(["a-long-directory-name"] * 8)  # 175 characters: past ustar's 100-byte name field
LONG_NAME = f"{LONG_DIR}/{'n' * 90}"  # past the 255 characters ustar's prefix and name hold together
LARGE_ID = 10_000_000  # past the 7 octal digits of a uid field: base-256 (GNU) or a pax record


def read_both_ways(path: Path | LayerTar) -> list[TarMember]:
    """The members by the fast reader, asserted equal field by field to tarfile's."""
    with layer_tar(path).reader() as data:
        fast = [found._asdict() for found in read_members(data)]
    with layer_tar(path).reader() as data:
        reference = [found._asdict() for found in tarfile_members(data)]
    assert fast == reference
    return [TarMember(**fields) for fields in fast]


def written(path: Path, tar_format: int, members: list[tuple[tarfile.TarInfo, bytes]], **options) -> Path:
    with tarfile.open(path, "w", format=tar_format, **options) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


# ---------------------------------------------------------------- tars that tarfile writes


def every_kind(tar_format: int) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Every member kind a layer holds, with what the format can say (ustar: no long links, no large ids;
    only pax: xattrs, fractional and negative times)."""
    members = [
        directory("usr"),
        member("usr/bin/app", b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1001, uname="app", gname="staff"),
        member("usr/bin/empty"),
        member("usr/bin/continuous", b"c" * 700, kind=tarfile.CONTTYPE),
        member("v7-directory/", kind=tarfile.AREGTYPE),  # the old V7 form of a directory
        symlink("usr/bin/link", "app"),
        hardlink("usr/bin/app-again", "usr/bin/app"),
        member("dev/null", kind=tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        member("dev/sda", kind=tarfile.BLKTYPE, devmajor=8, devminor=0, mode=0o660),
        member("run/fifo", kind=tarfile.FIFOTYPE),
        directory(f"{LONG_DIR}/"),
        member(f"{LONG_DIR}/file", b"in a long directory"),  # ustar: prefix + name
        member("srv/café/naïve.txt", b"accents", uname="ユーザー", gname="グループ"),
        member(".wh..wh..opq"),
        member("etc/.wh.gone"),
    ]
    if tar_format == tarfile.USTAR_FORMAT:
        return members
    members += [
        member(LONG_NAME, b"long name"),
        directory(f"{LONG_NAME}-directory"),
        symlink("usr/bin/far", f"/{LONG_NAME}"),
        hardlink(f"{LONG_NAME}-hard", LONG_NAME),
        member("home/someone", b"x", uid=LARGE_ID, gid=LARGE_ID),
    ]
    if tar_format == tarfile.GNU_FORMAT:
        return members + [member("old", b"before 1970", mtime=-86400)]
    return members + [
        member("usr/bin/ping", b"\x7fELF", xattrs={"security.capability": CAPABILITY, "user.note": b"text"}),
        member("usr/bin/fractional", mtime=1700000000.75),
        member("usr/bin/negative", mtime=-1.5),
    ]


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
                         ids=["ustar", "gnu", "pax"])
def test_every_member_kind_reads_as_tarfile_reads_it(tar_format, tmp_path):
    path = written(tmp_path / "layer.tar", tar_format, every_kind(tar_format))
    members = {found.name: found for found in read_both_ways(path)}
    assert len(members) == len(every_kind(tar_format))
    assert members["v7-directory"].type == tarfile.DIRTYPE
    assert members[f"{LONG_DIR}/file"].offset_data > 0
    if tar_format != tarfile.USTAR_FORMAT:
        assert members["usr/bin/far"].linkname == f"/{LONG_NAME}"
        assert members[f"{LONG_NAME}-hard"].linkname == LONG_NAME
        assert members["home/someone"].uid == LARGE_ID
    if tar_format == tarfile.PAX_FORMAT:
        assert members["usr/bin/ping"].xattrs == {"security.capability": CAPABILITY, "user.note": b"text"}
        assert members["usr/bin/negative"].mtime == -1


def test_names_that_are_not_utf8_read_as_tarfile_reads_them(tmp_path):
    # A GNU tar written in Latin-1: the names' bytes are not UTF-8, and read back as surrogates.
    path = written(tmp_path / "latin1.tar", tarfile.GNU_FORMAT,
                   [member("srv/café", b"x", uname="josé"), symlink("srv/link", "café")], encoding="latin-1")
    names = [found.name for found in read_both_ways(path)]
    assert names == ["srv/caf\udce9", "srv/link"]


def test_a_binary_pax_header_reads_as_tarfile_reads_it(tmp_path):
    # A name with undecodable bytes, or an xattr value that is not UTF-8 (a capability with high bits set):
    # tarfile writes the pax header with hdrcharset=BINARY.
    high_capability = bytes.fromhex("0100000200000080000000000000000000000000")
    path = written(tmp_path / "binary.tar", tarfile.PAX_FORMAT, [
        member("srv/caf\udce9", b"x"),
        member("usr/bin/tool", b"y", xattrs={"security.capability": high_capability}),
    ])
    assert b"hdrcharset=BINARY" in path.read_bytes()
    members = read_both_ways(path)
    assert members[0].name == "srv/caf\udce9"
    assert members[1].xattrs == {"security.capability": high_capability}


@pytest.mark.parametrize("tar_format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu", "pax"])
def test_a_member_past_8_gib_is_skipped_by_its_real_size(tar_format, tmp_path):
    """A size past the header's 11 octal digits: base-256 (GNU) or a pax size record over a 0 in the
    header (pax). The member's bytes are a hole in the file, so the tar costs no disk."""
    big = tarfile.TarInfo("data/big")
    big.size = 8 << 30
    path = tmp_path / "big.tar"
    with path.open("wb") as tar:
        tar.write(big.tobuf(tar_format))
        tar.seek(big.size, os.SEEK_CUR)
        after, _ = member("data/after", b"")
        tar.write(after.tobuf(tar_format) + bytes(2 * tarfile.BLOCKSIZE))
    assert [(found.name, found.size) for found in read_both_ways(path)] == [("data/big", 8 << 30), ("data/after", 0)]


# ---------------------------------------------------------------- tars that GNU tar writes


def gnu_tar_tree(root: Path, tar_format: str) -> Path:
    """Files of every kind on disk, with what the format can say (v7: short names, no devices or fifos;
    v7 and ustar: no long links, no large ids)."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/app").write_bytes(b"#!/bin/sh\n")
    (root / "usr/bin/app").chmod(0o4755)
    os.link(root / "usr/bin/app", root / "usr/bin/app-again")
    (root / "usr/bin/link").symlink_to("app")
    (root / "srv/café").mkdir(parents=True)
    (root / "srv/café/naïve.txt").write_text("accents")
    if tar_format == "v7":
        return root
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "dev/sda", stat.S_IFBLK | 0o660, os.makedev(8, 0))
    os.mkfifo(root / "usr/fifo")
    if tar_format == "ustar":
        return root
    (root / LONG_NAME).parent.mkdir(parents=True)
    (root / LONG_NAME).write_text("long name")
    os.link(root / LONG_NAME, root / f"{LONG_NAME}-hard")
    (root / "usr/bin/far").symlink_to(f"/{LONG_NAME}")
    (root / "home").mkdir()
    (root / "home/someone").write_text("x")
    os.chown(root / "home/someone", LARGE_ID, LARGE_ID)
    os.setxattr(root / "usr/bin/app", "security.capability", CAPABILITY)
    os.setxattr(root / "usr/bin/app", "user.note", b"\xff\xfe not text")
    return root


@pytest.mark.parametrize("tar_format", ["v7", "ustar", "oldgnu", "gnu", "posix"])
def test_gnu_tar_output_reads_as_tarfile_reads_it(tar_format, tmp_path):
    tree = gnu_tar_tree(tmp_path / "tree", tar_format)
    path = tmp_path / f"{tar_format}.tar"
    # --xattrs has GNU tar write pax records, whatever the format: only the posix tar gets them.
    xattrs = ["--xattrs", "--xattrs-include=*"] if tar_format == "posix" else []
    subprocess.run(["tar", f"--format={tar_format}", *xattrs, "-cf", path, "-C", tree, "."], check=True)
    members = {found.name: found for found in read_both_ways(path)}
    assert members["./usr/bin/app-again"].type == tarfile.LNKTYPE
    if tar_format != "v7":
        assert (members["./dev/null"].type, members["./dev/null"].devminor) == (tarfile.CHRTYPE, 3)
    if tar_format in ("oldgnu", "gnu", "posix"):
        hard_links = {found.linkname for found in members.values() if found.type == tarfile.LNKTYPE}
        assert {f"./{LONG_NAME}", f"./{LONG_NAME}-hard"} & hard_links  # whichever GNU tar met second
        assert members["./usr/bin/far"].linkname == f"/{LONG_NAME}"
        assert members["./home/someone"].uid == LARGE_ID
    if tar_format == "posix":
        assert members["./usr/bin/app"].xattrs == {"security.capability": CAPABILITY, "user.note": b"\xff\xfe not text"}


# ---------------------------------------------------------------- forms left to tarfile


def sparse_tar(tmp_path: Path, tar_format: str) -> Path:
    (tmp_path / "tree").mkdir()
    with (tmp_path / "tree/holes").open("wb") as holes:
        holes.seek(1 << 20)
        holes.write(b"end")
    path = tmp_path / "sparse.tar"
    subprocess.run(["tar", f"--format={tar_format}", "--sparse", "-cf", path, "-C", tmp_path / "tree", "."], check=True)
    return path


@pytest.mark.parametrize("tar_format", ["gnu", "posix"])
def test_a_sparse_member_is_left_to_tarfile(tar_format, tmp_path):
    path = sparse_tar(tmp_path, tar_format)
    with path.open("rb") as data, pytest.raises(UnusualTar):
        list(read_members(data))
    with path.open("rb") as data:
        assert [found.sparse for found in tarfile_members(data) if found.name == "./holes"] == [True]
    with pytest.raises(UnreadableImage, match="unsupported tar member type"):
        RootFS.from_layers([path])


def test_a_global_pax_header_is_left_to_tarfile(tmp_path):
    members = [directory("etc"), member("etc/motd", b"hello", xattrs={"user.note": b"kept"})]
    path = written(tmp_path / "global.tar", tarfile.PAX_FORMAT, members, pax_headers={"comment": "made by a test"})
    with path.open("rb") as data, pytest.raises(UnusualTar):
        list(read_members(data))
    plain = written(tmp_path / "plain.tar", tarfile.PAX_FORMAT, members)
    assert RootFS.from_layers([path]).entries == RootFS.from_layers([plain]).entries


def pax_member(records: bytes, name: str = "etc/motd") -> bytes:
    """A pax extended header holding `records` as given, then an empty file's header."""
    extended = tarfile.TarInfo("PaxHeader")
    extended.type, extended.size = tarfile.XHDTYPE, len(records)
    padding = bytes(-len(records) % tarfile.BLOCKSIZE)
    return extended.tobuf(tarfile.USTAR_FORMAT) + records + padding + tarfile.TarInfo(name).tobuf(tarfile.USTAR_FORMAT)


@pytest.mark.parametrize("records", [b"14 path=etc/x!", b"999 path=etc/x\n", b"0 path=etc/x\n", b"14 path=etc/x\ngarbage"],
                         ids=["no-newline", "past-the-header", "zero-length", "trailing-bytes"])
def test_a_malformed_pax_record_is_left_to_tarfile(records, tmp_path):
    path = tmp_path / "malformed.tar"
    path.write_bytes(pax_member(records) + bytes(2 * tarfile.BLOCKSIZE))
    with path.open("rb") as data, pytest.raises(UnusualTar):
        list(read_members(data))


def test_a_well_formed_pax_record_is_read(tmp_path):
    path = tmp_path / "pax.tar"
    path.write_bytes(pax_member(b"14 path=etc/x\n") + bytes(2 * tarfile.BLOCKSIZE))
    assert [found.name for found in read_both_ways(path)] == ["etc/x"]


def test_a_bad_checksum_after_the_first_member_ends_the_tar_as_tarfile_ends_it(tmp_path):
    path = written(tmp_path / "layer.tar", tarfile.PAX_FORMAT, [member("etc/a", b"a"), member("etc/b", b"b")])
    damaged = bytearray(path.read_bytes())
    damaged[2 * tarfile.BLOCKSIZE + 148] ^= 1  # the second header's checksum field
    path.write_bytes(damaged)
    with path.open("rb") as data, pytest.raises(UnusualTar):
        list(read_members(data))
    assert sorted(str(path) for path in RootFS.from_layers([path]).entries) == ["/", "/etc", "/etc/a"]


def test_a_tar_cut_short_is_left_to_tarfile(tmp_path):
    path = written(tmp_path / "layer.tar", tarfile.PAX_FORMAT, [member("etc/a", b"a" * 2000)])
    path.write_bytes(path.read_bytes()[:tarfile.BLOCKSIZE + 1000])
    with path.open("rb") as data, pytest.raises(UnusualTar):
        list(read_members(data))
    with pytest.raises(UnreadableImage):
        RootFS.from_layers([path])


# ---------------------------------------------------------------- real images


@pytest.mark.parametrize("name", ["nginx", "pyapp", "nodeapp"])
def test_every_layer_of_an_image_reads_as_tarfile_reads_it(name, fixture_image, tmp_path):
    """Both as read in place from the engine's storage and as `docker save` exports them."""
    engine = DockerEngine()
    image_id = engine.inspect_image(fixture_image(name)).id
    in_place = source_image(engine, image_id, tmp_path / "source").layers
    exported = spool_image(engine, image_id, tmp_path / "export")
    for layer in (*in_place, *exported):
        read_both_ways(layer)
