"""slim/image/apart.py: an image's index read by a forked child is the index read here, and whatever goes
wrong over there is done again here (real images on the engine; real tars and real forks otherwise)."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from slim.adapters.docker_engine import DockerEngine
from slim.image import apart
from slim.image.rootfs import RootFS, SourceImage, TarOnDisk, UnreadableImage, source_image

# Capabilities (xattrs), a hard link, symlinks and owners (caps); several layers and whiteouts (nginx).
FIXTURES = ("caps", "nginx")


@pytest.mark.matrix
@pytest.mark.parametrize("name", FIXTURES)
def test_an_index_read_apart_is_the_index_read_here(name, fixture_image, tmp_path):
    engine = DockerEngine()
    image_id = engine.inspect_image(fixture_image(name)).id
    source, rootfs = apart.index_image(engine, image_id, tmp_path / "apart")
    here = source_image(engine, image_id, tmp_path / "here")
    assert (source.read_in_place, source.config) == (here.read_in_place, here.config)
    assert [layer.size for layer in source.layers] == [layer.size for layer in here.layers]
    expected = RootFS.from_layers(here.layers)
    assert rootfs.entries == expected.entries
    files = [path for path, entry in expected.entries.items() if entry.size][:: max(1, len(expected.entries) // 50)]
    assert [rootfs.read(path) for path in files] == [expected.read(path) for path in files]


def layer_tar(path: Path, files: dict[str, bytes]) -> TarOnDisk:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = {"SCHILY.xattr.user.origin": "test"} if name.startswith("bin/") else {}
            tar.addfile(info, io.BytesIO(data))
    return TarOnDisk(path)


def test_the_child_parses_and_this_process_gets_the_same_index(tmp_path):
    layers = (layer_tar(tmp_path / "lower.tar", {"bin/app": b"\x7fELF" * 10, "etc/hostname": b"box\n"}),
              layer_tar(tmp_path / "upper.tar", {"etc/hostname": b"other\n"}))
    parsed_by = tmp_path / "pid"

    def make_source() -> SourceImage:
        parsed_by.write_text(str(os.getpid()))
        return SourceImage(layers, {}, read_in_place=False)

    source, rootfs = apart._indexed(make_source)
    assert int(parsed_by.read_text()) != os.getpid()
    assert rootfs.entries == RootFS.from_layers(layers).entries
    assert rootfs.read(PurePosixPath("/etc/hostname")) == b"other\n"
    assert dict(rootfs.get(PurePosixPath("/bin/app")).xattrs) == {"user.origin": b"test"}
    assert source.layers == layers
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # the child was reaped


def test_a_child_that_fails_leaves_the_work_here_and_its_error(tmp_path):
    (tmp_path / "broken.tar").write_bytes(b"not a tar" * 100)
    attempts = tmp_path / "attempts"

    def make_source() -> SourceImage:
        with attempts.open("a") as log:
            log.write(f"{os.getpid()}\n")
        return SourceImage((TarOnDisk(tmp_path / "broken.tar"),), {}, read_in_place=False)

    with pytest.raises(UnreadableImage, match="broken.tar"):
        apart._indexed(make_source)
    child, here = attempts.read_text().split()
    assert int(child) != os.getpid() and int(here) == os.getpid()
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_with_no_process_to_be_had_the_index_is_read_here(tmp_path, monkeypatch):
    layers = (layer_tar(tmp_path / "layer.tar", {"etc/hostname": b"box\n"}),)

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    _, rootfs = apart._indexed(lambda: SourceImage(layers, {}, read_in_place=False))
    assert rootfs.read(PurePosixPath("/etc/hostname")) == b"box\n"
