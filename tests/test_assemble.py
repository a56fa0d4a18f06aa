"""The slimmed image: plan, reproducible layer, `docker save` archive, and a real build through the engine."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path, PurePosixPath

import pytest

from slim.build.assemble import (
    LAYER_NAME, SOURCE_LABEL, InconsistentPlan, LayerStream, build_image, image_archive, layer_chunks, plan_image,
    plan_layer,
)
from slim.build.sizes import MEASURED
from slim.model import ROOT, Closure, ImageFacts, Reason, ReasonKind
from slim.image.rootfs import CHUNK, RootFS, spool_image
from tests.helpers import CAPABILITY, directory, hardlink, layer_tar, member, rootfs, symlink, whiteout

P = PurePosixPath
KEPT = (Reason(ReasonKind.INCLUDE),)
CONFIG = {
    "Hostname": "", "Domainname": "", "User": "app", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "ExposedPorts": {"8080/tcp": {}}, "Tty": False, "OpenStdin": False,
    "StdinOnce": False, "Env": ["PATH=/usr/bin", "GREETING=hi"], "Cmd": ["world"], "Image": "sha256:parent",
    "Volumes": {"/data": {}}, "WorkingDir": "/srv", "Entrypoint": ["/bin/hello"], "OnBuild": None,
    "Labels": {"org.example.name": "fixture"}, "StopSignal": "SIGQUIT",
    "Healthcheck": {"Test": ["CMD", "/bin/hello"]}, "Shell": ["/bin/sh", "-c"],
}


def facts(config=CONFIG) -> ImageFacts:
    return ImageFacts(
        ref="fixture", id="sha256:" + "ab" * 32, repo_tags=(), size=0, os="linux", architecture="amd64",
        created="2024-05-01T12:00:00Z", layer_diff_ids=(), config=config,
    )


def keep(*names: str) -> Closure:
    """Keep `names` and the directories above them, as the closure would."""
    paths = {P(name) for name in names}
    return Closure(kept={path: KEPT for path in paths | {parent for path in paths for parent in path.parents}})


def keep_all(fs: RootFS) -> Closure:
    return Closure(kept={entry.path: KEPT for entry in fs.walk(ROOT)})


@pytest.fixture
def image(tmp_path) -> RootFS:
    return rootfs(
        tmp_path,
        [
            directory("usr", mtime=1_600_000_000),
            member("usr/bin/ping", b"\x7fELF ping", mode=0o4755, uid=0, gid=3, gname="sys",
                   xattrs={"security.capability": CAPABILITY}),
            hardlink("usr/bin/ping6", "usr/bin/ping"),
            hardlink("usr/sbin/pingx", "usr/bin/ping"),
            symlink("bin", "usr/bin"),
            member("dev/console", kind=tarfile.CHRTYPE, devmajor=5, devminor=1, mode=0o600),
            directory("srv", mode=0o750, uid=1000, gid=1000, uname="app", gname="app"),
            member("srv/data", b"d" * 5000, uid=1000, gid=1000, mtime=1_500_000_000),
            member("etc/gone", b"x"),
        ],
        [whiteout("etc/gone"), member("etc/motd", b"welcome\n", mode=0o600)],
    )


def written_layer(where: Path, plan, fs: RootFS) -> tuple[LayerStream, Path]:
    """The layer streamed to a file, as build_image copies it for verification."""
    path = where / "slim-layer.tar"
    stream = LayerStream(plan_layer(plan, fs))
    path.write_bytes(b"".join(stream))
    return stream, path


# ---------------------------------------------------------------- plan


def test_plan_keeps_entries_sorted_with_metadata_and_the_config_verbatim(image):
    plan = plan_image(keep("/usr/bin/ping", "/srv/data", "/bin"), image, facts())
    assert [str(e.path) for e in plan.entries] == ["/", "/bin", "/srv", "/srv/data", "/usr", "/usr/bin", "/usr/bin/ping"]
    assert all(entry is image.get(entry.path) for entry in plan.entries)
    assert (plan.created, plan.source_id, plan.os, plan.architecture) == (
        "2024-05-01T12:00:00Z", facts().id, "linux", "amd64")
    noise = {"Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin",
             "StdinOnce", "Image"}
    assert plan.config == {
        **{key: value for key, value in CONFIG.items() if key not in noise},
        "Labels": {"org.example.name": "fixture", SOURCE_LABEL: facts().id},
    }
    assert CONFIG["Labels"] == {"org.example.name": "fixture"}  # the source's config is left alone


def test_plan_adds_the_label_when_the_image_has_none(image):
    plan = plan_image(keep(), image, facts({"Labels": None, "Cmd": ["x"]}))
    assert plan.config == {"Labels": {SOURCE_LABEL: facts().id}, "Cmd": ["x"]}


def test_plan_refuses_paths_the_image_lacks_or_orphans(image):
    with pytest.raises(InconsistentPlan, match="/nope"):
        plan_image(keep("/nope"), image, facts())
    with pytest.raises(InconsistentPlan, match="directory /usr/bin above it"):
        plan_image(Closure(kept={P("/usr/bin/ping"): KEPT, P("/usr"): KEPT}), image, facts())


# ---------------------------------------------------------------- layer


def test_the_layer_is_reproducible(tmp_path, image):
    # A second index over the same layers, elsewhere on disk: nothing host-side may leak into the bytes.
    (tmp_path / "copy").mkdir()
    for name in ("layer0.tar", "layer1.tar"):
        shutil.copy(tmp_path / name, tmp_path / "copy" / name)
    twin = RootFS.from_layers([tmp_path / "copy/layer0.tar", tmp_path / "copy/layer1.tar"])
    first, first_path = written_layer(tmp_path, plan_image(keep_all(image), image, facts()), image)
    first_bytes = first_path.read_bytes()
    second, second_path = written_layer(tmp_path / "copy", plan_image(keep_all(twin), twin, facts()), twin)
    assert first.diff_id == second.diff_id and first_bytes == second_path.read_bytes()
    assert first.diff_id == "sha256:" + hashlib.sha256(first_bytes).hexdigest()
    assert first.size == len(first_bytes)
    assert len(plan_layer(plan_image(keep_all(image), image, facts()), image).members) == len(image.entries)


# The digests the layer had when tarfile wrote it to a file (before the layer was streamed): the same input
# must keep giving the same layer, and so the same image id.
TARFILE_DIGESTS = {
    "everything": "sha256:b6534984b7f2a3cd5bcf44e68a242fa09f65b6403ccdfdbb0e5896eacf73005c",
    "hard links": "sha256:e909dfba98097264b6c09f18cb2aa86b0d1fb44c1dd71017281fe5ca5baf1e80",
}


@pytest.mark.parametrize("kept", TARFILE_DIGESTS)
def test_the_streamed_layer_is_the_tar_tarfile_wrote(tmp_path, image, kept):
    closure = keep_all(image) if kept == "everything" else keep("/usr/bin/ping", "/usr/sbin/pingx")
    stream, path = written_layer(tmp_path, plan_image(closure, image, facts()), image)
    assert stream.diff_id == TARFILE_DIGESTS[kept]
    assert path.stat().st_size % tarfile.RECORDSIZE == 0


def test_chunks_join_small_members_and_pass_big_files_whole(tmp_path):
    big = b"".join(bytes([n]) * 1000 for n in range(256)) * 5  # 1.28 MB, more than a chunk
    fs = rootfs(tmp_path, [member(f"small/{n}", b"s" * n) for n in range(200)] + [member("big", big)])
    layer = plan_layer(plan_image(keep_all(fs), fs, facts()), fs)
    chunks = list(layer_chunks(layer))
    assert sum(map(len, chunks)) == layer.size and all(chunks)
    assert all(len(chunk) <= CHUNK for chunk in chunks)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        assert tar.extractfile("big").read() == big
        assert tar.extractfile("small/199").read() == b"s" * 199


def test_a_file_shorter_than_its_index_says_stops_the_layer(tmp_path, image):
    plan = plan_image(keep("/srv/data"), image, facts())
    shrunk = dataclasses.replace(plan, contents={P("/srv/data"): b"d" * 10})  # the index says 5000 bytes
    with pytest.raises(InconsistentPlan, match="/srv/data ends 4990 bytes before"):
        b"".join(layer_chunks(plan_layer(shrunk, image)))


def test_layer_round_trips_every_entry(tmp_path, image):
    _, layer = written_layer(tmp_path, plan_image(keep_all(image), image, facts()), image)
    again = RootFS.from_layers([layer])
    # Everything but the layer an entry came from: the slimmed image has one layer.
    assert {path: dataclasses.replace(e, layer=0) for path, e in again.entries.items()} == {
        path: dataclasses.replace(e, layer=0) for path, e in image.entries.items()
    }
    ping = again.get(P("/usr/bin/ping"))
    assert (ping.mode, ping.gid, ping.gname, dict(ping.xattrs)) == (0o4755, 3, "sys", {"security.capability": CAPABILITY})
    assert ping.hardlink_group == (P("/usr/bin/ping"), P("/usr/bin/ping6"), P("/usr/sbin/pingx"))
    assert again.read(P("/usr/sbin/pingx")) == b"\x7fELF ping"
    assert again.read(P("/srv/data")) == b"d" * 5000


def test_hard_link_group_is_stored_once(tmp_path, image):
    _, layer = written_layer(tmp_path, plan_image(keep("/usr/bin/ping", "/usr/sbin/pingx"), image, facts()), image)
    with tarfile.open(layer) as tar:
        names = {info.name: info for info in tar}
    assert names["usr/bin/ping"].type == tarfile.REGTYPE and names["usr/bin/ping"].size == 9
    assert (names["usr/sbin/pingx"].type, names["usr/sbin/pingx"].linkname) == (tarfile.LNKTYPE, "usr/bin/ping")
    assert "usr/bin/ping6" not in names


def test_only_kept_name_of_a_hard_link_is_a_plain_file(tmp_path, image):
    _, layer = written_layer(tmp_path, plan_image(keep("/usr/sbin/pingx"), image, facts()), image)
    with tarfile.open(layer) as tar:
        pingx = tar.getmember("usr/sbin/pingx")
        assert (pingx.type, tar.extractfile(pingx).read()) == (tarfile.REGTYPE, b"\x7fELF ping")


# ---------------------------------------------------------------- archive


def test_image_archive_is_a_docker_save_tar_as_tarfile_writes_it(tmp_path, image):
    plan = plan_image(keep_all(image), image, facts())
    layer = plan_layer(plan, image)
    streamed = LayerStream(layer)
    archive = b"".join(image_archive(plan, streamed, "slimtrace-work:test"))
    assert archive == b"".join(image_archive(plan, LayerStream(layer), "slimtrace-work:test"))
    layer_bytes = b"".join(layer_chunks(layer))
    config = json.dumps({
        "architecture": "amd64", "config": plan.config, "created": plan.created,
        "history": [{"created": plan.created, "created_by": f"slimtrace: minified from {facts().id}"}],
        "os": "linux", "rootfs": {"diff_ids": [streamed.diff_id], "type": "layers"},
    }, sort_keys=True, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "Layers": [LAYER_NAME], "RepoTags": ["slimtrace-work:test"]}],
                          sort_keys=True, separators=(",", ":")).encode()
    independent = io.BytesIO()
    with tarfile.open(fileobj=independent, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((LAYER_NAME, layer_bytes), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    # tarfile pads the archive to a whole record; the engine needs only the two end blocks.
    assert independent.getvalue() == archive + tarfile.NUL * (-len(archive) % tarfile.RECORDSIZE)


# ---------------------------------------------------------------- through a real engine

HELLO_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char cwd[256], motd[64] = "";
    FILE *f = fopen("/etc/motd", "r");
    if (f) { fgets(motd, sizeof motd, f); fclose(f); }
    printf("hello %s greeting=%s cwd=%s motd=%s", argc > 1 ? argv[1] : "-", getenv("GREETING"),
           getcwd(cwd, sizeof cwd), motd);
    return 0;
}
"""

DOCKERFILE = """
FROM scratch
ADD files.tar /
ENV GREETING=hi
WORKDIR /srv
EXPOSE 8080/tcp
LABEL org.example.name=fixture
ENTRYPOINT ["/bin/hello"]
CMD ["world"]
"""


def build_context(context: Path) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc (with the static C library) to build the fixture binary")
    hello = context / "hello"
    subprocess.run(["gcc", "-static", "-O2", "-x", "c", "-", "-o", str(hello)], input=HELLO_C.encode(), check=True)
    layer_tar(
        context / "files.tar",
        member("bin/hello", hello.read_bytes(), mode=0o755),
        # Unpacking applies a hard link's header to the shared inode too: it must not lose the x bits.
        hardlink("bin/hello-again", "bin/hello", mode=0o755),
        member("usr/bin/bind", b"#!", mode=0o4750, gid=10, xattrs={"security.capability": CAPABILITY}),
        member("etc/motd", b"welcome\n", mode=0o600, uid=1000, gid=1000),
        symlink("usr/local/bin/hi", "../../../bin/hello"),
        directory("srv", mode=0o750, uid=1000, gid=1000),
    )
    (context / "Dockerfile").write_text(DOCKERFILE)
    return context


def run_output(docker_client, image_id: str) -> bytes:
    container = docker_client.containers.create(image_id)
    try:
        container.start()
        assert container.wait(timeout=60)["StatusCode"] == 0
        return container.logs()
    finally:
        container.remove(force=True)


@pytest.fixture
def engine_images(docker_client):
    """Every image the test makes, removed afterwards whatever happens."""
    images: list[str] = []
    yield images
    for image_id in reversed(images):
        docker_client.api.remove_image(image_id, force=True)


@pytest.mark.engine
def test_slimmed_image_runs_like_the_original(tmp_path, docker_client, engine_images):
    from slim.adapters.docker_engine import DockerEngine

    engine = DockerEngine(docker_client)
    (tmp_path / "context").mkdir()
    original, _ = docker_client.images.build(path=str(build_context(tmp_path / "context")), rm=True, forcerm=True)
    engine_images.append(original.id)
    source = engine.inspect_image(original.id)
    index = RootFS.from_layers(spool_image(engine, source.id, tmp_path / "source"))

    work_tag = f"slimtrace-work:test-{tmp_path.name}"
    assembled = build_image(engine, plan_image(keep_all(index), index, source), index, tmp_path / "result", work_tag)
    built = assembled.measured()
    engine_images.append(built.id)
    # Loaded under the build's work tag, the engine's proof of whose it is.
    assert engine.inspect_image(built.id).repo_tags == (work_tag,)

    assert built.id != source.id and built.files == len(index.entries)
    assert run_output(docker_client, built.id) == run_output(docker_client, original.id) == (
        b"hello world greeting=hi cwd=/srv motd=welcome\n")
    slimmed = engine.inspect_image(built.id)
    for key in ("Entrypoint", "Cmd", "Env", "ExposedPorts", "WorkingDir", "User", "Volumes"):
        assert slimmed.config.get(key) == source.config.get(key), key
    assert slimmed.config["Labels"] == {"org.example.name": "fixture", SOURCE_LABEL: source.id}
    assert slimmed.layer_diff_ids == (built.layer_diff_id,)
    # The copy verification indexes is the layer the engine holds, and its gzip size was measured whole.
    copy = (tmp_path / "result" / LAYER_NAME).read_bytes()
    assert built.layer_diff_id == "sha256:" + hashlib.sha256(copy).hexdigest() and built.layer_size == len(copy)
    assert (built.compressed_size, built.compressed_by) == (len(gzip.compress(copy, 6, mtime=0)), MEASURED)
    # What the engine stored is the filesystem we read: every path with the same metadata.
    again = RootFS.from_layers(spool_image(engine, built.id, tmp_path / "slimmed"))
    # (The layer an entry comes from differs by nature: the slimmed image has one.)
    assert without_layers(again) == without_layers(index)
    assert again.get(P("/usr/bin/bind")).xattrs == {"security.capability": CAPABILITY}


def without_layers(rootfs: RootFS) -> dict:
    return {path: dataclasses.replace(entry, layer=0) for path, entry in rootfs.entries.items()}


@pytest.mark.engine
def test_an_error_while_the_layer_streams_is_raised_as_it_is_and_loads_nothing(tmp_path, docker_client, image):
    from slim.adapters.docker_engine import DockerEngine

    plan = plan_image(keep("/srv/data"), image, facts())
    shrunk = dataclasses.replace(plan, contents={P("/srv/data"): b"d" * 10})  # the index says 5000 bytes
    work_tag = f"slimtrace-work:test-{tmp_path.name}"
    # Not the engine connection's failure that the cut-off upload causes, but why it was cut off.
    with pytest.raises(InconsistentPlan, match="/srv/data ends 4990 bytes before"):
        build_image(DockerEngine(docker_client), shrunk, image, tmp_path / "result", work_tag)
    assert docker_client.images.list(name=work_tag) == []
    assert not [thread for thread in threading.enumerate() if thread.name == "slimtrace-gzip-layer"]
