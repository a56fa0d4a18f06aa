"""`slim xray`: wasted bytes across layers (hand-built layers and a real image that deletes a big file),
package databases, and the analysis of a real fixture image."""
from __future__ import annotations

import io
import json
import tarfile
import uuid
from pathlib import Path

import pytest

from slim.model import ImageFacts
from slim.image.rootfs import index_layers
from slim.image.package_db import APK_INSTALLED, DPKG_STATUS, installed_packages
from slim.reporting.xray import analyse
from tests.helpers import slim

BIG = 20 * 1024 * 1024  # the fixture layer's dd: 20 MiB


# ---------------------------------------------------------------- hand-built layers


def tar_of(path: Path, *members: tuple[str, bytes | None] | tuple[str, str, str]) -> Path:
    """("name", b"data") is a file, ("name", None) a directory, ("name", "link", "target") a hard link."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for item in members:
            info = tarfile.TarInfo(item[0])
            if len(item) == 3:
                info.type, info.linkname = tarfile.LNKTYPE, item[2]
                tar.addfile(info)
            elif item[1] is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(item[1])
                tar.addfile(info, io.BytesIO(item[1]))
    return path


def facts(layers: int) -> ImageFacts:
    return ImageFacts(ref="test/image:1", id="sha256:" + "0" * 64, repo_tags=(), size=0, os="linux",
                      architecture="amd64", created="", layer_diff_ids=("",) * layers, config={})


def xray_of(tmp_path: Path, *layers: list, history: list | None = None):
    tars = [tar_of(tmp_path / f"layer{n}.tar", *members) for n, members in enumerate(layers)]
    rootfs, indexes = index_layers(tars)
    return analyse(facts(len(tars)), {"history": history or []}, rootfs, indexes)


def test_overwritten_deleted_and_opaque_bytes_are_wasted(tmp_path):
    x = xray_of(
        tmp_path,
        [("etc", None), ("etc/app.conf", b"a" * 100), ("cache", None), ("cache/one", b"1" * 300),
         ("cache/two", b"2" * 400), ("keep", b"k" * 50), ("opt", None), ("opt/old", b"o" * 60)],
        [("etc/app.conf", b"b" * 120), ("cache/.wh.one", b""), (".wh.keep-not-there", b"")],
        [(".wh.cache", b""), ("opt/.wh..wh..opq", b""), ("opt/new", b"n" * 7), ("etc/app.conf", b"c" * 130)],
    )
    waste = {w.path: w for w in x.waste}
    assert waste["/etc/app.conf"].how == "overwritten"
    assert waste["/etc/app.conf"].bytes == 100 + 120 and waste["/etc/app.conf"].layers == (1, 2)
    assert (waste["/cache/one"].how, waste["/cache/one"].bytes) == ("deleted", 300)
    assert (waste["/cache"].bytes, waste["/cache"].files) == (400, 1)  # /cache/one was already gone
    assert (waste["/opt"].how, waste["/opt"].bytes) == ("deleted", 60)
    assert "/keep-not-there" not in waste and "/keep" not in waste
    total = 100 + 300 + 400 + 50 + 60 + 120 + 7 + 130
    assert x.total_bytes == total
    assert x.wasted_bytes == 100 + 120 + 300 + 400 + 60
    assert x.efficiency == round(1 - x.wasted_bytes / total, 4)
    # What is left is exactly what the merged filesystem holds.
    assert x.total_bytes - x.wasted_bytes == 50 + 7 + 130
    assert [layer.size for layer in x.layers] == [100 + 300 + 400 + 50 + 60, 120, 7 + 130]
    assert [layer.deletions for layer in x.layers] == [0, 2, 2]


def test_hard_links_count_their_bytes_once(tmp_path):
    x = xray_of(tmp_path, [("bin", None), ("bin/tool", b"x" * 1000), ("bin/alias", "link", "bin/tool")])
    assert x.total_bytes == 1000 and x.wasted_bytes == 0 and x.efficiency == 1.0
    assert x.largest_dirs[0].path == "/bin" and x.largest_dirs[0].bytes == 1000


def test_history_names_each_layer_and_skips_empty_ones(tmp_path):
    history = [
        {"created_by": "/bin/sh -c #(nop) ADD file:abc in /"},
        {"created_by": "/bin/sh -c #(nop)  ENV A=1", "empty_layer": True},
        {"created_by": "|1 X=1 /bin/sh -c echo hi > /f"},
    ]
    x = xray_of(tmp_path, [("a", b"1")], [("f", b"hi\n")], history=history)
    assert [layer.created_by for layer in x.layers] == [history[0]["created_by"], history[2]["created_by"]]
    from slim.reporting.render_xray import build_step

    assert build_step(history[0]["created_by"]) == "ADD file:abc in /"
    assert build_step(history[2]["created_by"]) == "RUN echo hi > /f"


def test_dpkg_status():
    status = (
        "Package: nginx\nStatus: install ok installed\nInstalled-Size: 1234\nArchitecture: amd64\n"
        "Version: 1.22.1-9\nDescription: small, powerful\n web server\n\n"
        "Package: removed-one\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        "Package: noarch\nStatus: install ok installed\nVersion: 2\nArchitecture: all\n"
    )
    packages = installed_packages(DPKG_STATUS, status)
    assert [(p.name, p.version, p.architecture, p.installed_size) for p in packages] == [
        ("nginx", "1.22.1-9", "amd64", 1234 * 1024),
        ("noarch", "2", "all", None),
    ]


def test_apk_installed():
    installed = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nI:622592\nT:the musl c library\n\nP:busybox\nV:1.36\nA:x86_64\n"
    packages = installed_packages(APK_INSTALLED, installed)
    assert [(p.manager, p.name, p.version, p.installed_size) for p in packages] == [
        ("apk", "musl", "1.2.4-r2", 622592),
        ("apk", "busybox", "1.36", None),
    ]


# ---------------------------------------------------------------- real images


@pytest.fixture(scope="module")
def wasteful_image(docker_client, fixture_image, tmp_path_factory):
    """The base image, then a layer that writes 20 MiB and a layer that deletes it again."""
    base = fixture_image("base")
    context = tmp_path_factory.mktemp("wasteful")
    (context / "Dockerfile").write_text(
        f"FROM {base}\n"
        f"RUN dd if=/dev/urandom of=/big.bin bs=1048576 count={BIG // 1048576} status=none\n"
        "RUN rm /big.bin\n"
    )
    tag = f"slimtrace-test/xray-waste:{uuid.uuid4().hex[:10]}"
    docker_client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False)
    yield tag
    docker_client.images.remove(tag, force=True)


@pytest.mark.engine
def test_xray_reports_the_deleted_big_file(wasteful_image):
    result = slim("xray", wasteful_image, "--json")
    assert result.returncode == 0, result.stderr
    x = json.loads(result.stdout)
    assert len(x["layers"]) == 3
    assert x["layers"][1]["size"] == BIG and "dd if=/dev/urandom" in x["layers"][1]["created_by"]
    assert x["layers"][2]["deletions"] == 1 and "rm /big.bin" in x["layers"][2]["created_by"]
    waste = {w["path"]: w for w in x["waste"]}
    assert waste["/big.bin"] == {"path": "/big.bin", "how": "deleted", "layers": [2], "bytes": BIG, "files": 1}
    assert x["wasted_bytes"] == BIG  # nothing else in these layers is hidden
    assert x["efficiency"] == round(1 - BIG / x["total_bytes"], 4)
    assert x["efficiency"] < 0.9  # 20 MiB of a base of about 117 MB

    text = slim("xray", wasteful_image)
    assert text.returncode == 0, text.stderr
    assert "/big.bin  (deleted)" in text.stdout
    assert f"Efficiency  {x['efficiency'] * 100:.2f} %" in text.stdout
    assert "RUN rm /big.bin" in text.stdout


@pytest.mark.engine
def test_xray_of_nginx(fixture_image):
    result = slim("xray", fixture_image("nginx"), "--json")
    assert result.returncode == 0, result.stderr
    x = json.loads(result.stdout)
    assert x["entrypoint_elf"] == "/usr/sbin/nginx"
    nginx = next(e for e in x["elf"] if e["path"] == "/usr/sbin/nginx")
    assert nginx["kind"] == "executable" and nginx["interpreter"] == "/lib64/ld-linux-x86-64.so.2"
    needed = {n["name"]: n["path"] for n in nginx["needed"]}
    # Resolved inside the image through its usr-merge symlinks, as the loader does.
    assert needed["libssl.so.3"] == "/usr/lib/x86_64-linux-gnu/libssl.so.3"
    assert needed["libc.so.6"] == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    libc = next(e for e in x["elf"] if e["path"] == "/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert libc["kind"] == "library"
    packages = {p["name"]: p for p in x["packages"]}
    assert packages["nginx"]["manager"] == "dpkg" and packages["libc6"]["installed_size"] > 0
    privileged = {p["path"]: p for p in x["privileged"]}
    assert privileged["/usr/bin/passwd"]["setuid"] and privileged["/usr/bin/ping"]["capabilities"]
    assert privileged["/usr/sbin/unix_chkpwd"]["setgid"]
    assert x["layers"][-1]["created_by"].startswith("/bin/sh -c #(nop) COPY")
    assert x["largest_dirs"][0]["path"] == "/usr"
    assert 0 < x["efficiency"] <= 1
