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
from pathlib import Path, PurePosixPath

import pytest

from slim.build.assemble import (
    SOURCE_LABEL, InconsistentPlan, LayerInfo, build_image, image_archive, plan_image, write_layer,
)
from slim.model import ROOT, Closure, ImageFacts, Reason, ReasonKind
from slim.image.rootfs import RootFS, spool_image
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


def written_layer(where: Path, plan, fs: RootFS) -> tuple[LayerInfo, Path]:
    path = where / "slim-layer.tar"
    with path.open("wb") as out:
        return write_layer(plan, fs, out), path



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


def test_write_layer_is_reproducible(tmp_path, image):
    # A second index over the same layers, elsewhere on disk: nothing host-side may leak into the bytes.
    (tmp_path / "copy").mkdir()
    for name in ("layer0.tar", "layer1.tar"):
        shutil.copy(tmp_path / name, tmp_path / "copy" / name)
    twin = RootFS.from_layers([tmp_path / "copy/layer0.tar", tmp_path / "copy/layer1.tar"])
    first, first_path = written_layer(tmp_path, plan_image(keep_all(image), image, facts()), image)
    first_bytes = first_path.read_bytes()
    second, second_path = written_layer(tmp_path / "copy", plan_image(keep_all(twin), twin, facts()), twin)
    assert first == second and first_bytes == second_path.read_bytes()
    assert first.diff_id == "sha256:" + hashlib.sha256(first_bytes).hexdigest()
    assert first.size == len(first_bytes)
    assert first.compressed_size == len(gzip.compress(first_bytes, compresslevel=6, mtime=0))
    assert first.files == len(image.entries)


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


def test_image_archive_is_a_reproducible_docker_save_tar(tmp_path, image):
    plan = plan_image(keep_all(image), image, facts())
    layer, layer_path = written_layer(tmp_path, plan, image)
    archive = b"".join(image_archive(plan, layer_path, layer, "slimtrace-work:test"))
    assert archive == b"".join(image_archive(plan, layer_path, layer, "slimtrace-work:test"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert {info.mtime for info in tar} == {0}
        (manifest,) = json.load(tar.extractfile("manifest.json"))
        config_bytes = tar.extractfile(manifest["Config"]).read()
        assert tar.extractfile(manifest["Layers"][0]).read() == layer_path.read_bytes()
    assert manifest == {
        "Config": hashlib.sha256(config_bytes).hexdigest() + ".json",
        "Layers": [layer.diff_id.removeprefix("sha256:") + "/layer.tar"],
        "RepoTags": ["slimtrace-work:test"],
    }
    assert json.loads(config_bytes) == {
        "architecture": "amd64", "os": "linux", "config": plan.config, "created": plan.created,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": plan.created, "created_by": f"slimtrace: minified from {facts().id}"}],
    }


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
    built = build_image(engine, plan_image(keep_all(index), index, source), index, tmp_path / "result", work_tag)
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
    # What the engine stored is the filesystem we read: every path with the same metadata.
    again = RootFS.from_layers(spool_image(engine, built.id, tmp_path / "slimmed"))
    # (The layer an entry comes from differs by nature: the slimmed image has one.)
    assert without_layers(again) == without_layers(index)
    assert again.get(P("/usr/bin/bind")).xattrs == {"security.capability": CAPABILITY}


def without_layers(rootfs: RootFS) -> dict:
    return {path: dataclasses.replace(entry, layer=0) for path, entry in rootfs.entries.items()}
