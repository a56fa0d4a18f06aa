"""The package databases a slimmed image keeps, on hand-built roots (pure logic: no engine).

The real dpkg database of a Debian image, read back by dpkg, dpkg-query and debsbom, is in
tests/test_scanners.py; apk and distroless' status.d have no image here (nothing can be pulled), so their
formats are built by hand from what Alpine's apk and distroless write.
"""
from __future__ import annotations

import json
from pathlib import PurePosixPath

from slim.image.package_db import APK_INSTALLED, DPKG_STATUS_DIR, installed_packages, trim_databases
from slim.build.sbom import ImageFiles, Subject, package_purls, sbom_json, validation_errors
from tests.helpers import Layer, closure_of, debian_like

P = PurePosixPath

# Two packages as Alpine 3.19's /lib/apk/db/installed holds them (checksums shortened from the real ones).
APK_DB = """\
C:Q1Bn8ZCCl9w8BPDvOc4e/Ld3ZJVXk=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:383152
I:622592
T:the musl c library (libc) implementation
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1705421540
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1E2Lt6UbTWCEtMJqaeRqX1xLD9jk=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q17yJ3JFNypA4mxhJJr0ou6CzsJVI=

C:Q1ZAU1rPpvUKn25z9vCl1XEEdA5qU=
P:busybox
V:1.36.1-r15
A:x86_64
S:509656
I:952320
T:Size optimized toolbox of many common UNIX utilities
o:busybox
F:bin
R:busybox
a:0:0:755
Z:Q1y5/R9yKoC5BkTq5mHMo5Uk/pQ10=
F:etc
R:securetty
Z:Q1mB95Hp7nP2JgUxqzl0JzCAB5zh0=

"""


def alpine_like() -> Layer:
    layer = Layer()
    for d in ("/lib", "/bin", "/etc", "/lib/apk", "/lib/apk/db"):
        layer.directory(d)
    layer.file("/lib/ld-musl-x86_64.so.1", b"\x7fELF musl")
    layer.symlink("/lib/libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1")
    layer.file("/bin/busybox", b"\x7fELF busybox")
    layer.file("/etc/securetty", b"console\n", mode=0o644)
    layer.file(str(APK_INSTALLED), APK_DB.encode(), mode=0o644)
    return layer


def test_apk_keeps_the_records_of_kept_packages_trimmed_to_kept_files(tmp_path):
    rootfs = alpine_like().rootfs(tmp_path)
    kept = {P("/lib"), P("/lib/ld-musl-x86_64.so.1"), P("/lib/libc.musl-x86_64.so.1")}
    trimmed = trim_databases(rootfs, kept)
    assert [(p.name, p.version) for p in trimmed.summary.kept] == [("musl", "1.2.4_git20230717-r4")]
    assert [p.name for p in trimmed.summary.removed] == ["busybox"]
    # The kept record is the original one, byte for byte: musl kept every file it lists.
    assert trimmed.rewritten[APK_INSTALLED].decode() == APK_DB.split("\n\n")[0] + "\n\n"


def test_apk_record_loses_the_lines_of_removed_files(tmp_path):
    rootfs = alpine_like().rootfs(tmp_path)
    trimmed = trim_databases(rootfs, {P("/bin"), P("/bin/busybox")})
    text = trimmed.rewritten[APK_INSTALLED].decode()
    assert [p.name for p in trimmed.summary.kept] == ["busybox"]
    assert "R:busybox\na:0:0:755\nZ:Q1y5/R9yKoC5BkTq5mHMo5Uk/pQ10=" in text
    assert "securetty" not in text and "F:etc" not in text and "P:musl" not in text
    assert text.startswith("C:Q1ZAU1rPpvUKn25z9vCl1XEEdA5qU=\nP:busybox\nV:1.36.1-r15\n")
    assert [p.name for p in installed_packages(APK_INSTALLED, text)] == ["busybox"]


def distroless_like() -> Layer:
    """distroless' layout: a stanza per file in status.d/, its md5sums next to it, no info/."""
    layer = debian_like()
    for d in ("/var/lib", "/var/lib/dpkg", str(DPKG_STATUS_DIR), "/usr/share", "/usr/share/doc",
              "/usr/share/doc/libc6", "/usr/share/doc/tzdata", "/usr/share/zoneinfo"):
        layer.directory(d)
    layer.file(f"{DPKG_STATUS_DIR}/libc6", b"Package: libc6\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\n"
               b"Source: glibc\nStatus: install ok installed\n", mode=0o644)
    layer.file(f"{DPKG_STATUS_DIR}/libc6.md5sums", b"0123456789abcdef0123456789abcdef  usr/lib/x86_64-linux-gnu/"
               b"libc-2.36.so\n00000000000000000000000000000000  usr/share/doc/libc6/copyright\n", mode=0o644)
    layer.file(f"{DPKG_STATUS_DIR}/tzdata", b"Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n"
               b"Status: install ok installed\n", mode=0o644)
    layer.file(f"{DPKG_STATUS_DIR}/tzdata.md5sums", b"11111111111111111111111111111111  usr/share/zoneinfo/UTC\n"
               b"22222222222222222222222222222222  usr/share/doc/tzdata/copyright\n", mode=0o644)
    layer.file("/usr/share/zoneinfo/UTC", b"TZif", mode=0o644)
    for package in ("libc6", "tzdata"):
        layer.file(f"/usr/share/doc/{package}/copyright", f"{package} copyright\n".encode(), mode=0o644)
    return layer


def test_status_d_stanzas_of_kept_packages_with_their_copyright(tmp_path):
    rootfs = distroless_like().rootfs(tmp_path)
    # The program's libc through /lib -> usr/lib: the database names the file as /usr/lib/...
    closure = closure_of(rootfs, "/lib/x86_64-linux-gnu/libc-2.36.so")
    assert [p.name for p in closure.packages.kept] == ["libc6"]
    assert [p.name for p in closure.packages.removed] == ["tzdata"]
    assert closure.packages.kept[0].source == "glibc"
    assert closure.rewritten[DPKG_STATUS_DIR / "libc6"] == rootfs.read(DPKG_STATUS_DIR / "libc6")
    assert closure.rewritten[DPKG_STATUS_DIR / "libc6.md5sums"] == (
        b"0123456789abcdef0123456789abcdef  usr/lib/x86_64-linux-gnu/libc-2.36.so\n"
        b"00000000000000000000000000000000  usr/share/doc/libc6/copyright\n"
    )
    assert DPKG_STATUS_DIR / "tzdata" not in closure.kept
    assert [r.kind.value for r in closure.kept[P("/usr/share/doc/libc6/copyright")]] == ["license"]
    assert P("/usr/share/doc/tzdata/copyright") not in closure.kept
    assert closure.kept[DPKG_STATUS_DIR / "libc6"][0].kind.value == "package-database"


def test_copyright_alone_keeps_no_package(tmp_path):
    rootfs = distroless_like().rootfs(tmp_path)
    closure = closure_of(rootfs, "/usr/share/doc/tzdata/copyright")
    assert [p.name for p in closure.packages.kept] == []


def test_no_package_db_keeps_none_of_it(tmp_path):
    rootfs = distroless_like().rootfs(tmp_path)
    closure = closure_of(rootfs, "/lib/x86_64-linux-gnu/libc-2.36.so", package_db=False)
    assert closure.packages is None and not closure.rewritten
    assert not any(path.is_relative_to("/var/lib/dpkg") or path.name == "copyright" for path in closure.kept)


def test_sbom_of_an_alpine_root_validates_with_apk_purls(tmp_path):
    rootfs = alpine_like().rootfs(tmp_path)
    files = ImageFiles({P("/lib/apk/db/installed")}, rootfs.read)
    document = sbom_json(files, Subject("alpine-like:1", "sha256:" + "1" * 64, None))
    assert validation_errors(document) is None
    assert package_purls(document) == {
        "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64",
        "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64",
    }
    # Reproducible: the same image gives the same document (the copy in the image keeps its layer digest).
    assert document == sbom_json(files, Subject("alpine-like:1", "sha256:" + "1" * 64, None))


def test_sbom_language_packages(tmp_path):
    layer = Layer()
    site = "/usr/lib/python3/dist-packages"
    layer.file(f"{site}/flask-3.0.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: Flask\nVersion: 3.0.0\n")
    layer.file(f"{site}/flask-3.0.0.dist-info/RECORD",
               b"flask/__init__.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,2\n"
               b"flask/cli.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,2\n")
    layer.file(f"{site}/flask/__init__.py", b"")
    layer.file("/app/node_modules/@types/node/package.json", b'{"name": "@types/node", "version": "20.1.0"}')
    layer.file("/app/node_modules/express/package.json", b'{"name": "express", "version": "4.18.2"}')
    layer.file("/app/node_modules/express/test/fixture/package.json", b'{"name": "fixture", "version": "0.0.0"}')
    layer.file("/var/lib/gems/3.1.0/specifications/rack-2.2.8.gemspec", b"")
    rootfs = layer.rootfs(tmp_path)
    kept = {e.path for e in rootfs.entries.values() if e.kind.value == "file" and e.path.name != "cli.py"}
    document = sbom_json(ImageFiles(kept, rootfs.read), Subject("app:1", None, None))
    assert validation_errors(document) is None
    assert package_purls(document) == {
        "pkg:pypi/flask@3.0.0", "pkg:npm/%40types/node@20.1.0", "pkg:npm/express@4.18.2", "pkg:gem/rack@2.2.8",
    }
    flask = next(c for c in json.loads(document)["components"] if c["name"] == "Flask")
    # Only the kept file, with the SHA-256 its RECORD states (the hash of an empty file).
    assert [(f["name"], f["hashes"][0]["content"]) for f in flask["components"]] == [
        (f"{site}/flask/__init__.py", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    ]


def test_sbom_is_the_document_the_library_writes_with_the_files_nested_by_it(tmp_path):
    """The package files are added to the library's JSON as plain values (the library's own nesting costs
    seconds per image); the bytes must be what the library writes when it nests them, in both layouts."""
    from cyclonedx.model import HashAlgorithm, HashType
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    rootfs = distroless_like().rootfs(tmp_path)
    files = ImageFiles({e.path for e in rootfs.entries.values() if e.kind.value == "file"}, rootfs.read)
    for indent in (None, 2):
        document = sbom_json(files, Subject("app:1", "sha256:" + "2" * 64, "sha256:" + "3" * 64), indent=indent)
        written = json.loads(document)
        assert any(c.get("components") for c in written["components"]), "the fixture must hold package files"
        bom = Bom.from_json(_without_files(written))
        for component in bom.components:
            nested = next(c for c in written["components"] if c["bom-ref"] == str(component.bom_ref))
            component.components = [
                Component(type=ComponentType.FILE, name=f["name"], bom_ref=f["bom-ref"],
                          hashes=[HashType(alg=HashAlgorithm(h["alg"]), content=h["content"]) for h in f["hashes"]])
                for f in nested.get("components", [])
            ]
        assert document == json.dumps(json.loads(JsonV1Dot6(bom).output_as_string()), indent=indent)


def _without_files(document: dict) -> dict:
    return {**document, "components": [{k: v for k, v in c.items() if k != "components"} for c in document["components"]]}
