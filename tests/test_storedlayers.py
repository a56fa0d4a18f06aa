"""Reading an image in place from the engine's storage: the same layer tars, byte for byte, as the engine's
export, on every engine that exposes its layers; the export on the one that does not (the containerd store)."""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
import uuid
from pathlib import Path, PurePosixPath

import docker
import pytest

from slim.adapters.docker_engine import DockerEngine
from slim.engine import ContainerSpec, StoredImage, StoredLayer
from slim.errors import ExitCode
from slim.image.rootfs import RootFS, layer_steps, source_image, spool_image
from slim.image.storedlayers import StoredLayerTar, StoredLayerUnreadable

# Fidelity fixtures: capabilities, a hard link, symlinks, numeric owners and modes (caps); several layers,
# a package database and a deleted apt cache (nginx).
FIXTURES = ("caps", "nginx")


def digest(layer) -> str:
    sha256 = hashlib.sha256()
    with layer.reader() as data:
        while chunk := data.read(1 << 20):
            sha256.update(chunk)
    return f"sha256:{sha256.hexdigest()}"


@pytest.mark.matrix
@pytest.mark.parametrize("name", FIXTURES)
def test_the_layers_read_in_place_are_the_exported_tars(name, fixture_image, tmp_path):
    engine = DockerEngine()
    facts = engine.inspect_image(fixture_image(name))
    source = source_image(engine, facts.id, tmp_path / "source")
    # The containerd image store exposes no layer directories: there, and only there, the image is exported.
    assert source.read_in_place == (engine.host().storage_driver != "overlayfs")
    # A diff id is the digest of the uncompressed layer tar: same digest, same bytes as `docker save`.
    assert tuple(digest(layer) for layer in source.layers) == facts.layer_diff_ids
    exported = RootFS.from_layers(spool_image(engine, facts.id, tmp_path / "export"))
    in_place = RootFS.from_layers(source.layers)
    assert in_place.entries == exported.entries
    for entry in exported.entries.values():
        if entry.size and entry.path.suffix in (".so", ".txt", "") and entry.size < 1 << 20:
            assert in_place.read(entry.path) == exported.read(entry.path), entry.path


@pytest.mark.matrix
def test_the_in_place_config_names_the_layers_steps(fixture_image, tmp_path):
    engine = DockerEngine()
    facts = engine.inspect_image(fixture_image("caps"))
    source = source_image(engine, facts.id, tmp_path)
    steps = layer_steps(source.config, len(source.layers))
    assert steps is not None and any("setcap" in step for step in steps)


class RecordGone:
    """The real engine, whose storage names a first layer record that is no longer there (the image was
    being removed as the build found it): everything else is the engine's own answer."""

    def __init__(self, engine: DockerEngine, stored: StoredImage, gone: Path):
        self._engine = engine
        self._stored = dataclasses.replace(
            stored, layers=(dataclasses.replace(stored.layers[0], tar_split=gone), *stored.layers[1:])
        )

    def stored_image(self, image_id: str) -> StoredImage:
        return self._stored

    def __getattr__(self, name: str):
        return getattr(self._engine, name)


@pytest.mark.matrix
def test_an_image_whose_layer_record_cannot_be_read_is_exported(fixture_image, tmp_path):
    engine = DockerEngine()
    facts = engine.inspect_image(fixture_image("caps"))
    stored = engine.stored_image(facts.id)
    if stored is None:
        pytest.skip("this engine's images are always exported")
    source = source_image(RecordGone(engine, stored, tmp_path / "gone.json.gz"), facts.id, tmp_path / "source")
    assert not source.read_in_place
    assert tuple(digest(layer) for layer in source.layers) == facts.layer_diff_ids


@pytest.fixture
def own_image(fixture_image, docker_client):
    """An image of the test's own, one layer above the jq fixture holding /late.txt; removed whatever happens."""
    engine = DockerEngine(docker_client)  # creates containers as builds do (Podman's limits included)
    container_id = engine.create_container(
        ContainerSpec(image=fixture_image("jq"), entrypoint=("sh", "-c"), command=("echo late > /late.txt",))
    )
    try:
        engine.start(container_id)
        assert engine.wait(container_id, 60) == 0
        image = docker_client.containers.get(container_id).commit(f"slimtrace-test/removed-{uuid.uuid4().hex[:10]}", "1")
    finally:
        engine.remove_container(container_id)
    yield image.id
    with contextlib.suppress(docker.errors.NotFound):  # the test removed it (Podman says NotFound)
        docker_client.images.remove(image.id, force=True)


@pytest.mark.matrix
def test_an_image_removed_while_read_in_place_says_so_with_exit_code_3(own_image, docker_client, tmp_path):
    engine = DockerEngine()
    source = source_image(engine, own_image, tmp_path / "source")
    if not source.read_in_place:
        pytest.skip("this engine's images are exported: a removal after the export changes nothing")
    rootfs = RootFS.from_layers(source.layers)
    docker_client.images.remove(own_image, force=True)
    with pytest.raises(StoredLayerUnreadable, match="the image was removed or changed while slimtrace read it") as e:
        rootfs.read(PurePosixPath("/late.txt"))
    assert e.value.exit_code == ExitCode.IMAGE_NOT_FOUND


# ---------------------------------------------------------------- a hand-made layer (pure, real files)


def stored_layer(tmp_path: Path, files: dict[str, bytes]) -> tuple[StoredLayer, bytes]:
    """A layer directory holding `files` and a tar-split record of their tar, as an engine keeps them;
    and the tar itself."""
    diff = tmp_path / "diff"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            (diff / name).parent.mkdir(parents=True, exist_ok=True)
            (diff / name).write_bytes(data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = archive.getvalue()
    records, position = [], 0
    for member in tarfile.open(fileobj=io.BytesIO(raw)):
        records.append({"type": 2, "payload": base64.b64encode(raw[position:member.offset_data]).decode()})
        records.append({"type": 1, "name": member.name, "size": member.size})
        position = member.offset_data + member.size
    records.append({"type": 2, "payload": base64.b64encode(raw[position:]).decode()})
    tar_split = tmp_path / "tar-split.json.gz"
    with gzip.open(tar_split, "wt") as out:
        out.writelines(json.dumps(record) + "\n" for record in records)
    return StoredLayer(diff=diff, tar_split=tar_split), raw


def test_a_stored_layer_streams_its_tar_and_reads_only_what_is_asked(tmp_path):
    layer, raw = stored_layer(tmp_path, {"etc/hostname": b"box\n", "usr/bin/app": b"\x7fELF" * 1000})
    tar = StoredLayerTar(layer, tmp_path / "headers")
    assert tar.size == len(raw)
    with tar.reader() as data:
        assert data.read() == raw
    rootfs = RootFS.from_layers([tar])
    (layer.diff / "usr/bin/app").unlink()  # the index holds no bytes: a file not read is never needed
    assert rootfs.read(PurePosixPath("/etc/hostname")) == b"box\n"
    assert rootfs.entries[PurePosixPath("/usr/bin/app")].size == 4000
    with pytest.raises(StoredLayerUnreadable, match="usr/bin/app"):
        rootfs.read(PurePosixPath("/usr/bin/app"))


def test_a_file_reached_through_a_symlink_in_the_layer_directory_is_refused(tmp_path):
    layer, _ = stored_layer(tmp_path, {"etc/passwd": b"root:x:0:0\n"})
    (tmp_path / "host-etc").mkdir()
    (tmp_path / "host-etc" / "passwd").write_bytes(b"HOST FILE\n")
    (layer.diff / "etc" / "passwd").unlink()
    (layer.diff / "etc").rmdir()
    (layer.diff / "etc").symlink_to(tmp_path / "host-etc")
    rootfs = RootFS.from_layers([StoredLayerTar(layer, tmp_path / "headers")])
    with pytest.raises(StoredLayerUnreadable, match="etc/passwd"):
        rootfs.read(PurePosixPath("/etc/passwd"))


def test_a_file_changed_since_the_engine_recorded_it_is_refused(tmp_path):
    layer, _ = stored_layer(tmp_path, {"etc/motd": b"hello\n"})
    rootfs = RootFS.from_layers([StoredLayerTar(layer, tmp_path / "headers")])
    (layer.diff / "etc/motd").write_bytes(b"hello, longer\n")
    with pytest.raises(StoredLayerUnreadable, match="not the size the engine recorded"):
        rootfs.read(PurePosixPath("/etc/motd"))
