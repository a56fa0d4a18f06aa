"""RootFS over hand-built layer tars: stacking rules, metadata, contents, and resolution in the image root."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
import tarfile
from pathlib import Path, PurePosixPath

import pytest
import zstandard

from slim.model import EntryKind
from slim.image.rootfs import MAX_SYMLINKS, Resolved, RootFS, UnreadableImage, layer_steps, saved_config, spool_image
from tests.run_settings import RUN_SETTINGS
from tests.helpers import CAPABILITY, MTIME, directory, hardlink, layer_tar, member, rootfs, symlink, whiteout

P = PurePosixPath


def paths(fs: RootFS) -> list[str]:
    return [str(entry.path) for entry in fs.walk(P("/"))]


# ---------------------------------------------------------------- stacking layers


def test_names_are_normalised_and_parents_implied(tmp_path):
    fs = rootfs(tmp_path, [member("./usr/bin/x", b"x"), member("etc/../../../opt/y", b"y")])
    assert paths(fs) == ["/", "/opt", "/opt/y", "/usr", "/usr/bin", "/usr/bin/x"]
    for implied in ("/", "/usr", "/usr/bin", "/opt"):
        entry = fs.get(P(implied))
        assert (entry.kind, entry.mode, entry.uid, entry.gid) == (EntryKind.DIR, 0o755, 0, 0)
    assert fs.get(P("/usr/bin/x")).path == P("/usr/bin/x")


def test_explicit_root_and_directory_metadata_win_over_implied(tmp_path):
    fs = rootfs(tmp_path, [member("srv/app/run", b"#!"), directory("srv", mode=0o700, uid=7), directory("./", mode=0o750)])
    assert (fs.get(P("/srv")).mode, fs.get(P("/srv")).uid) == (0o700, 7)
    assert fs.get(P("/")).mode == 0o750
    assert fs.children(P("/srv")) == [P("/srv/app")]


def test_upper_layer_overrides_and_directories_merge(tmp_path):
    fs = rootfs(
        tmp_path,
        [directory("etc"), member("etc/a", b"old"), member("etc/b", b"lower")],
        [directory("etc", mode=0o711), member("etc/a", b"newer", mode=0o600)],
    )
    assert fs.children(P("/etc")) == [P("/etc/a"), P("/etc/b")]
    assert fs.get(P("/etc")).mode == 0o711
    assert (fs.get(P("/etc/a")).mode, fs.read(P("/etc/a"))) == (0o600, b"newer")
    assert fs.read(P("/etc/b")) == b"lower"


def test_non_directory_over_directory_hides_the_lower_subtree(tmp_path):
    fs = rootfs(tmp_path, [member("opt/tool/bin/x", b"x")], [symlink("opt/tool", "/usr")])
    assert paths(fs) == ["/", "/opt", "/opt/tool"]
    assert fs.get(P("/opt/tool")).kind is EntryKind.SYMLINK


def test_implied_parent_replaces_a_lower_non_directory(tmp_path):
    fs = rootfs(tmp_path, [symlink("lib", "usr/lib"), member("usr/lib/a", b"a")], [member("lib/b", b"b")])
    assert fs.get(P("/lib")).kind is EntryKind.DIR
    assert fs.children(P("/lib")) == [P("/lib/b")]


def test_whiteouts_delete_a_file_and_a_whole_subtree(tmp_path):
    fs = rootfs(
        tmp_path,
        [member("a/keep", b"k"), member("a/gone", b"g"), member("d/x/y", b"y"), member("d/z", b"z")],
        [whiteout("a/gone"), whiteout("d")],
    )
    assert paths(fs) == ["/", "/a", "/a/keep"]
    assert fs.get(P("/d/x/y")) is None


def test_whiteout_reaches_only_lower_layers(tmp_path):
    fs = rootfs(tmp_path, [member("f", b"lower")], [member("f", b"upper"), whiteout("f")])
    assert fs.read(P("/f")) == b"upper"


def test_last_member_of_a_name_wins_within_a_layer(tmp_path):
    fs = rootfs(tmp_path, [member("a", b"bytes"), symlink("a", "b")])
    assert fs.get(P("/a")).kind is EntryKind.SYMLINK
    with pytest.raises(FileNotFoundError):
        fs.open(P("/a"))


def test_opaque_directory_drops_lower_children_only(tmp_path):
    fs = rootfs(
        tmp_path,
        [member("etc/a", b"a"), member("etc/sub/b", b"b"), member("var/c", b"c")],
        [member("etc/new", b"n"), member("etc/.wh..wh..opq")],
    )
    assert paths(fs) == ["/", "/etc", "/etc/new", "/var", "/var/c"]


def test_hard_links_share_contents_and_carry_the_surviving_group(tmp_path):
    fs = rootfs(
        tmp_path,
        [member("bin/a", b"payload", mode=0o4755), hardlink("bin/b", "bin/a"), hardlink("sbin/c", "bin/a")],
        [whiteout("sbin/c")],
    )
    group = (P("/bin/a"), P("/bin/b"))
    for name in group:
        entry = fs.get(name)
        assert (entry.kind, entry.mode, entry.size, entry.hardlink_group) == (EntryKind.FILE, 0o4755, 7, group)
        assert fs.read(name) == b"payload"
    assert fs.get(P("/sbin/c")) is None


def test_overriding_one_name_of_a_hard_link_splits_the_group(tmp_path):
    fs = rootfs(tmp_path, [member("a", b"one"), hardlink("b", "a")], [member("a", b"two")])
    assert fs.get(P("/a")).hardlink_group == fs.get(P("/b")).hardlink_group == ()
    assert (fs.read(P("/a")), fs.read(P("/b"))) == (b"two", b"one")


def test_hard_link_to_a_missing_target_is_refused(tmp_path):
    with pytest.raises(UnreadableImage, match="hard link /b -> /a"):
        rootfs(tmp_path, [hardlink("b", "a")])


def test_metadata_and_xattrs_read_back(tmp_path):
    fs = rootfs(
        tmp_path,
        [
            member("usr/bin/ping", b"\x7fELF", mode=0o4755, uid=0, gid=3, uname="root", gname="sys",
                   xattrs={"security.capability": CAPABILITY, "user.note": b"hi"}),
            member("dev/null", kind=tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
            member("run/fifo", kind=tarfile.FIFOTYPE),
            directory("tmp", mode=0o1777, uid=1000, gid=1000, uname="app", gname="app"),
            symlink("bin", "usr/bin"),
        ],
    )
    ping = fs.get(P("/usr/bin/ping"))
    assert (ping.mode, ping.uid, ping.gid, ping.uname, ping.gname, ping.mtime, ping.size) == (
        0o4755, 0, 3, "root", "sys", MTIME, 4)
    assert dict(ping.xattrs) == {"security.capability": CAPABILITY, "user.note": b"hi"}
    null = fs.get(P("/dev/null"))
    assert (null.kind, null.devmajor, null.devminor, null.mode) == (EntryKind.CHAR, 1, 3, 0o666)
    assert fs.get(P("/run/fifo")).kind is EntryKind.FIFO
    assert (fs.get(P("/tmp")).mode, fs.get(P("/tmp")).uname) == (0o1777, "app")
    assert (fs.get(P("/bin")).kind, fs.get(P("/bin")).link_target) == (EntryKind.SYMLINK, "usr/bin")
    assert set(fs.entries) == {P(p) for p in ("/", "/usr", "/usr/bin", "/usr/bin/ping", "/dev", "/dev/null",
                                              "/run", "/run/fifo", "/tmp", "/bin")}


def test_walk_and_children_are_sorted_parents_first(tmp_path):
    fs = rootfs(tmp_path, [member("a-b", b""), member("a/z", b""), member("a/b/c", b""), member("0", b"")])
    assert paths(fs) == ["/", "/0", "/a", "/a/b", "/a/b/c", "/a/z", "/a-b"]
    assert paths(fs) == [str(p) for p in sorted(fs.entries)]
    assert [str(e.path) for e in fs.walk(P("/a/b"))] == ["/a/b", "/a/b/c"]
    assert list(fs.walk(P("/nope"))) == []
    assert fs.children(P("/a")) == [P("/a/b"), P("/a/z")]
    assert fs.children(P("/a-b")) == []


# ---------------------------------------------------------------- contents


def test_open_is_a_seekable_window_onto_the_member(tmp_path):
    data = bytes(range(256)) * 4096  # 1 MiB, more than one buffer
    fs = rootfs(tmp_path, [member("before", b"x" * 1000), member("lib/big", data), member("after", b"y"),
                           symlink("link", "lib/big")])
    with fs.open(P("/link")) as f:
        assert f.seekable()
        f.seek(-10, 2)
        assert f.read() == data[-10:]
        f.seek(300)
        assert f.read(5) == data[300:305]
        assert f.tell() == 305
        f.seek(0)
        assert f.read() == data
    assert fs.read(P("/lib/big"), limit=4) == data[:4]
    assert fs.read(P("/before")) == b"x" * 1000


def test_open_refuses_what_has_no_contents(tmp_path):
    fs = rootfs(tmp_path, [directory("d"), symlink("dangling", "nowhere")])
    with pytest.raises(OSError, match="Not a regular file"):
        fs.open(P("/d"))
    with pytest.raises(FileNotFoundError):
        fs.open(P("/dangling"))


# ---------------------------------------------------------------- resolution inside the image root


@pytest.fixture
def linked(tmp_path) -> RootFS:
    """Debian's merged-/usr layout plus some traps."""
    return rootfs(
        tmp_path,
        [
            symlink("lib", "usr/lib"),
            symlink("lib64", "usr/lib64"),
            member("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", b"ld"),
            symlink("usr/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            symlink("usr/lib/x86_64-linux-gnu/libc.so", "libc.so.6"),
            member("usr/lib/x86_64-linux-gnu/libc.so.6", b"libc"),
            symlink("usr/bin/up", "../lib/./x86_64-linux-gnu/"),
            symlink("evil", "../../../../etc/shadow"),
            symlink("evil-abs", "/../../etc/passwd"),
            member("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
            symlink("loop/a", "b"),
            symlink("loop/b", "a"),
            symlink("loop/self", "self"),
            symlink("empty", ""),
            member("file", b"f"),
        ],
    )


def test_resolve_follows_relative_and_absolute_links_listing_each(linked):
    got = linked.resolve(P("/lib64/ld-linux-x86-64.so.2"))
    assert got.exists
    assert got.path == P("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    assert got.symlinks == (P("/lib64"), P("/usr/lib64/ld-linux-x86-64.so.2"), P("/lib"))


def test_resolve_relative_link_and_dotdot_after_a_link(linked):
    assert linked.resolve(P("/lib/x86_64-linux-gnu/libc.so")) == Resolved(
        P("/usr/lib/x86_64-linux-gnu/libc.so.6"), (P("/lib"), P("/usr/lib/x86_64-linux-gnu/libc.so")), True)
    # `..` after a link climbs from where the link led, not lexically.
    got = linked.resolve(P("/usr/bin/up/../../bin/up/libc.so.6"))
    assert (got.path, got.exists) == (P("/usr/lib/x86_64-linux-gnu/libc.so.6"), True)


def test_resolve_relative_to_cwd_and_without_following_the_last_link(linked):
    assert linked.resolve(P("x86_64-linux-gnu/libc.so.6"), cwd=P("/lib")).path == P("/usr/lib/x86_64-linux-gnu/libc.so.6")
    got = linked.resolve(P("/lib/x86_64-linux-gnu/libc.so"), follow_last=False)
    assert (got.path, got.symlinks, got.exists) == (P("/usr/lib/x86_64-linux-gnu/libc.so"), (P("/lib"),), True)


def test_dotdot_never_climbs_above_the_image_root(linked):
    assert linked.resolve(P("/../../../etc/passwd")).path == P("/etc/passwd")
    got = linked.resolve(P("/evil-abs"))
    assert (got.path, got.exists) == (P("/etc/passwd"), True)


def test_hostile_symlink_stays_inside_the_image(linked):
    got = linked.resolve(P("/evil"))
    assert (got.path, got.symlinks, got.exists) == (P("/etc/shadow"), (P("/evil"),), False)
    with pytest.raises(FileNotFoundError):
        linked.open(P("/evil"))  # the host's /etc/shadow exists, the image's does not


def test_loops_and_broken_paths_do_not_exist(linked):
    assert not linked.resolve(P("/loop/a")).exists
    assert len(linked.resolve(P("/loop/self")).symlinks) == MAX_SYMLINKS + 1
    assert linked.resolve(P("/loop/a"), follow_last=False).exists
    assert not linked.resolve(P("/empty")).exists
    assert not linked.resolve(P("/file/x")).exists  # ENOTDIR
    assert not linked.resolve(P("/missing/x")).exists
    assert linked.resolve(P("/missing/x")).path == P("/missing/x")


@pytest.mark.parametrize("order", [range(MAX_SYMLINKS + 1), reversed(range(MAX_SYMLINKS + 1))])
def test_symlink_limit_is_exact_whatever_was_resolved_before(tmp_path, order):
    # l0 -> l1 -> ... -> l40 -> target: from l0 that is 41 links (ELOOP), from l1 exactly 40 (fine).
    chain = [symlink(f"l{i}", f"l{i + 1}") for i in range(MAX_SYMLINKS)]
    fs = rootfs(tmp_path, [*chain, symlink(f"l{MAX_SYMLINKS}", "target"), member("target", b"t")])
    results = {i: fs.resolve(P(f"/l{i}")) for i in order}
    assert not results[0].exists
    assert all(results[i].exists and results[i].path == P("/target") for i in range(1, MAX_SYMLINKS + 1))
    assert len(results[1].symlinks) == MAX_SYMLINKS


# ---------------------------------------------------------------- spooling `docker save`


class SavedImage:
    """An Engine stand-in that only knows `save_image`: a docker-save tar in uneven chunks."""

    def __init__(self, archive: bytes):
        self.archive = archive

    def save_image(self, image_id):
        return (self.archive[i:i + 777] for i in range(0, len(self.archive), 777))


def archive(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def manifest(config: str, *layers: str) -> tuple[tarfile.TarInfo, bytes]:
    return member("manifest.json", json.dumps([{"Config": config, "RepoTags": None, "Layers": list(layers)}]).encode())


def spooled(tmp_path: Path, saved: bytes) -> tuple[list[Path], Path]:
    work = tmp_path / "work"
    return spool_image(SavedImage(saved), "sha256:x", work), work


def blob(data: bytes) -> str:
    return f"blobs/sha256/{hashlib.sha256(data).hexdigest()}"


def test_legacy_layout_with_a_layer_linked_to_another_entry(tmp_path):
    """Docker before 25: `<id>/layer.tar`; a layer two entries share is stored once, the second a symlink."""
    layer = layer_tar(tmp_path / "src.tar", member("hello", b"hi")).read_bytes()
    got, work = spooled(tmp_path, archive(
        directory("aaa"), member("aaa/VERSION", b"1.0"), member("aaa/json", b"{}"), member("aaa/layer.tar", layer),
        directory("bbb"), symlink("bbb/layer.tar", "../aaa/layer.tar"),
        member("cfg.json", b'{"history": []}'), manifest("cfg.json", "bbb/layer.tar", "aaa/layer.tar"),
        member("repositories", b"{}"),
    ))
    assert got == [work / "bbb/layer.tar", work / "aaa/layer.tar"]
    assert [path.read_bytes() for path in got] == [layer, layer]
    assert saved_config(work, "sha256:x") == {"history": []}


def test_podman_layout_links_each_layer_to_a_file_at_the_top(tmp_path):
    layer = layer_tar(tmp_path / "src.tar", member("hello", b"hi")).read_bytes()
    got, work = spooled(tmp_path, archive(
        member("f00d.tar", layer), directory("beef"), symlink("beef/layer.tar", "../f00d.tar"),
        member("c0de.json", b"{}"), manifest("c0de.json", "beef/layer.tar"),
    ))
    assert got == [work / "beef/layer.tar"] and got[0].read_bytes() == layer


@pytest.mark.parametrize("compress", [gzip.compress, zstandard.ZstdCompressor().compress, lambda data: data])
def test_oci_layout_layers_plain_or_compressed_are_read_by_their_magic(tmp_path, compress):
    """Docker 25+ and the containerd store: everything under blobs/, named by digest only."""
    layer = layer_tar(tmp_path / "src.tar", member("etc/os-release", b"ID=debian")).read_bytes()
    stored, config = compress(layer), json.dumps({"history": [{"created_by": "ADD rootfs /"}]}).encode()
    got, work = spooled(tmp_path, archive(
        member("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'), member("index.json", b"{}"),
        directory("blobs"), directory("blobs/sha256"), member(blob(stored), stored), member(blob(config), config),
        manifest(blob(config), blob(stored)),
    ))
    assert got == [work / blob(stored)] and got[0].read_bytes() == layer
    assert RootFS.from_layers(got).read(P("/etc/os-release")) == b"ID=debian"
    assert layer_steps(saved_config(work, "sha256:x"), 1) == ("ADD rootfs /",)


@pytest.mark.parametrize("members, words", [
    ((symlink("a/layer.tar", "../../../etc/passwd"),), "links outside the archive"),
    ((symlink("a/layer.tar", "/etc/passwd"),), "links outside the archive"),
    ((symlink("a/layer.tar", "../b.tar"),), "not a file of the archive"),
    ((symlink("a/layer.tar", "layer.tar"),), "not a file of the archive"),
    ((member("../escape.tar", b"x"),), "outside the archive"),
    ((member("/etc/escape", b"x"),), "outside the archive"),
])
def test_a_member_or_link_reaching_outside_the_archive_is_refused(tmp_path, members, words):
    with pytest.raises(UnreadableImage, match=words):
        spooled(tmp_path, archive(*members, member("c.json", b"{}"), manifest("c.json", "a/layer.tar")))
    assert not (tmp_path / "escape.tar").exists()


def test_a_layer_the_manifest_names_must_be_in_the_archive(tmp_path):
    with pytest.raises(UnreadableImage, match="blobs/sha256/00 missing from the archive"):
        spooled(tmp_path, archive(member("c.json", b"{}"), manifest("c.json", "blobs/sha256/00")))


def test_spool_image_without_manifest_is_unreadable(tmp_path):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.addfile(member("x/layer.tar")[0])
    with pytest.raises(UnreadableImage, match="manifest.json"):
        spool_image(SavedImage(archive.getvalue()), "sha256:x", tmp_path)


# ---------------------------------------------------------------- against the kernel's own view

STAT_KINDS = {
    "regular file": EntryKind.FILE, "regular empty file": EntryKind.FILE, "directory": EntryKind.DIR,
    "symbolic link": EntryKind.SYMLINK, "character special file": EntryKind.CHAR,
    "block special file": EntryKind.BLOCK, "fifo": EntryKind.FIFO,
}
# What the engine changes when it runs a container: mounts, files its init layer adds or writes over the
# image's, and the mtimes of the directories holding those.
RUNTIME_PATHS = (
    "/", "/.dockerenv", "/etc", "/etc/hostname", "/etc/hosts", "/etc/mtab", "/etc/resolv.conf", "/dev", "/proc", "/sys",
    "/run", "/run/.containerenv")  # Podman's counterpart of /.dockerenv
# Every path, each symlink's target as the kernel resolves it (empty if it leads nowhere), and one capability.
LIST_EVERYTHING = r"""
find / -xdev -exec stat -c '%n|%F|%a|%u|%g|%s|%Y|%h' {} + | sed 's/^/stat|/'
find / -xdev -type l | while read -r p; do printf 'link|%s|%s\n' "$p" "$(realpath -e -- "$p" 2>/dev/null)"; done
"""


def container_view(docker_client, image: str) -> tuple[dict, dict]:
    # The image's Cmd after `sh -c SCRIPT` only fills $0 and $1 (Podman ignores an empty entrypoint).
    container = docker_client.containers.create(image, entrypoint=["sh", "-c", LIST_EVERYTHING], user="0", **RUN_SETTINGS)
    try:
        container.start()
        assert container.wait(timeout=120)["StatusCode"] == 0
        lines = container.logs(stderr=False).decode().splitlines()
    finally:
        container.remove(force=True, v=True)
    stats, links = {}, {}
    for line in lines:
        what, path, rest = line.split("|", 2)
        if what == "link":
            links[path] = rest
        else:
            kind, mode, uid, gid, size, mtime, nlink = rest.split("|")
            stats[path] = comparable(STAT_KINDS[kind], int(mode, 8), int(uid), int(gid), int(size), int(mtime), int(nlink))
    return stats, links


def comparable(kind: EntryKind, mode: int, uid: int, gid: int, size: int, mtime: int, nlink: int) -> tuple:
    """stat(1)'s facts as the index holds them: sizes of files and symlinks only, link counts of files only."""
    sized = kind in (EntryKind.FILE, EntryKind.SYMLINK)
    return kind, mode, uid, gid, size if sized else None, mtime, nlink if kind is EntryKind.FILE else None


def index_view(entry) -> tuple:
    target_size = len(os.fsencode(entry.link_target or ""))
    size = entry.size if entry.kind is EntryKind.FILE else target_size
    links = max(1, len(entry.hardlink_group))
    return comparable(entry.kind, entry.mode, entry.uid, entry.gid, size, entry.mtime, links)


@pytest.mark.engine
@pytest.mark.matrix
def test_index_agrees_with_what_a_container_sees(tmp_path, docker_client, fixture_image):
    from slim.adapters.docker_engine import DockerEngine

    image = fixture_image("caps")  # several layers on the base, with a capability, a hard link, odd owners
    fs = RootFS.from_layers(spool_image(DockerEngine(docker_client), image, tmp_path))
    stats, links = container_view(docker_client, image)

    def image_owned(path: str) -> bool:
        return path not in RUNTIME_PATHS and not path.startswith(("/dev/", "/proc/", "/sys/"))

    assert set(filter(image_owned, stats)) == set(filter(image_owned, map(str, fs.entries)))
    for path in filter(image_owned, stats):
        assert index_view(fs.get(P(path))) == stats[path], path
    for path in filter(image_owned, links):
        resolved = fs.resolve(P(path))
        assert (str(resolved.path) if resolved.exists else "") == links[path], path
    capcat = fs.get(P("/usr/local/bin/capcat"))
    magic, permitted = struct.unpack_from("<II", capcat.xattrs["security.capability"])
    assert (magic & 1, permitted) == (1, 1 << 13)  # effective, cap_net_raw
    assert capcat.hardlink_group == (P("/usr/local/bin/capcat"), P("/usr/local/bin/capcat-hard"))
