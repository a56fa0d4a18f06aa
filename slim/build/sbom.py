"""A CycloneDX SBOM of an image's files: what a slimmed image holds, or any image (`slim sbom`).

One component per OS package of the (trimmed) dpkg and apk databases, purl `pkg:deb/debian/NAME@VERSION?
arch=ARCH` as debsbom and Trivy write it; one per language package whose files are there (a Python
distribution's `.dist-info`, an npm `package.json` under `node_modules/` or Debian's `/usr/share/nodejs/`,
a gem's gemspec). Each carries its files, with the hashes the package database records (dpkg's MD5, the
SHA-256 of a wheel's RECORD): reading them costs nothing, hashing every file again would. The image itself is
the metadata component. The document is reproducible (serial number and time derive from the image), so the
copy stored in the slimmed image keeps its layer reproducible too.

Imported where an SBOM is made, not at start-up: the CycloneDX library is 0.07 s of imports, a fifth of
slimtrace's start-up, which commands that make no SBOM (report, explain, gc, --help) need not pay.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from cyclonedx.model import HashAlgorithm, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from packageurl import PackageURL

from slim import __version__
from .assemble import SOURCE_LABEL
from .closure import kept_entry
from slim.engine import Engine
from slim.model import Closure, EntryKind, InstalledPackage
from slim.image.package_db import APK_INSTALLED, DPKG_INFO, DPKG_STATUS, DPKG_STATUS_DIR, installed_packages
from slim.image.rootfs import RootFS, source_image

P = PurePosixPath
# Where the slimmed image holds its own SBOM (`docker run IMAGE cat` it, or copy it out).
SBOM_PATH = P("/usr/share/slimtrace/sbom.cdx.json")
SCHEMA = SchemaVersion.V1_6
PROPERTY_PREFIX = "slimtrace:"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class ImageFiles:
    """The regular files of an image as the SBOM reads them (the slimmed image's before it exists)."""

    paths: Collection[PurePosixPath]
    read: Callable[[PurePosixPath], bytes]


@dataclass(frozen=True)
class Subject:
    """The image the SBOM describes."""

    name: str  # its tag or reference
    image_id: str | None  # None for the copy stored inside the image: its own id depends on that copy
    source_image: str | None  # the image it was slimmed from


def kept_files(rootfs: RootFS, closure: Closure) -> ImageFiles:
    """The slimmed image's files before it is written: the kept ones, the databases as trimmed."""
    files = {
        path for path in closure.kept if (entry := kept_entry(rootfs, closure, path)) and entry.kind is EntryKind.FILE
    }
    return ImageFiles(files, lambda path: closure.rewritten[path] if path in closure.rewritten else rootfs.read(path))


def all_files(rootfs: RootFS) -> ImageFiles:
    files = {entry.path for entry in rootfs.entries.values() if entry.kind is EntryKind.FILE}
    return ImageFiles(files, rootfs.read)


def image_sbom(engine: Engine, ref: str) -> str:
    """`slim sbom IMAGE`: the SBOM of any local image, slimmed or not, read from its filesystem."""
    with tempfile.TemporaryDirectory(prefix="slimtrace-", ignore_cleanup_errors=True) as scratch:
        facts = engine.inspect_image(ref)
        rootfs = RootFS.from_layers(source_image(engine, facts.id, Path(scratch)).layers)
        source = (facts.config.get("Labels") or {}).get(SOURCE_LABEL)
        return sbom_json(all_files(rootfs), Subject(ref, facts.id, source))


def sbom_json(files: ImageFiles, subject: Subject, indent: int | None = 2) -> str:
    """The SBOM as JSON: indented for people, compact (indent None) for the copy inside the image."""
    packages = sorted(_packages(files), key=lambda package: str(package.component.bom_ref))
    components = [package.component for package in packages]
    image = _image_component(subject)
    bom = Bom(
        components=components,
        serial_number=uuid.uuid5(uuid.NAMESPACE_URL, _identity(subject, components)),
        # A fixed time: the SBOM (and the layer that holds it) must not change with the clock.
        metadata=BomMetaData(component=image, timestamp=EPOCH),
    )
    bom.register_dependency(image, components)  # the image holds every package directly
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="slimtrace", version=__version__))
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    _add_files(document.get("components", []), {str(package.component.bom_ref): package.files for package in packages})
    return json.dumps(document, indent=indent)


def _add_files(components: list[dict], files: dict[str, list[dict]]) -> None:
    """Each package's files as its nested components, placed where the library places a component's keys
    (in name order). The library's own nested components cost a sorted set per package, rebuilt at every
    insertion: seconds for a few thousand files, the slowest part of a build."""
    for index, component in enumerate(components):
        if files.get(component["bom-ref"]):
            components[index] = dict(sorted({**component, "components": files[component["bom-ref"]]}.items()))


def validation_errors(document: str) -> str | None:
    """What the CycloneDX JSON schema (the library's own validator) finds wrong, None when valid."""
    # Imported here: the validator's format checkers take a second to import, which no build needs.
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SCHEMA).validate_str(document)
    return None if error is None else str(error)


def package_purls(document: str) -> set[str]:
    """The purls of the OS and language packages of an SBOM (for comparing two of them)."""
    return {c["purl"] for c in json.loads(document).get("components", []) if "purl" in c}


def _identity(subject: Subject, components: list[Component]) -> str:
    names = [subject.name, subject.image_id or "", subject.source_image or ""] + [str(c.bom_ref) for c in components]
    text = "\n".join(names)
    return "slimtrace:" + hashlib.sha256(text.encode()).hexdigest()


def _image_component(subject: Subject) -> Component:
    properties = [Property(name=f"{PROPERTY_PREFIX}{key}", value=value) for key, value in (
        ("image-id", subject.image_id), ("source-image", subject.source_image)) if value]
    return Component(type=ComponentType.CONTAINER, name=subject.name, bom_ref="image", properties=properties)


# ---------------------------------------------------------------- components


def _packages(files: ImageFiles) -> Iterator[_Package]:
    yield from _os_packages(files)
    for path in sorted(files.paths):
        if path.name == "METADATA" and path.parent.name.endswith(".dist-info"):
            yield from _python_distribution(files, path)
        elif path.name == "package.json" and _is_npm_package_dir(path.parent):
            yield from _npm_package(files, path)
        elif path.suffix == ".gemspec" and path.parent.name == "specifications":
            yield from _gem(path)


def _os_packages(files: ImageFiles) -> Iterator[_Package]:
    databases = [p for p in files.paths if p in (DPKG_STATUS, APK_INSTALLED) or p.parent == DPKG_STATUS_DIR]
    for database in sorted(databases):
        for package in installed_packages(database, files.read(database).decode("utf-8", "surrogateescape")):
            hashes = _dpkg_md5sums(files, package) if package.manager == "dpkg" else {}
            yield _component(package.name, package.version, os_purl(package), hashes, source=package.source)


def os_purl(package: InstalledPackage) -> PackageURL:
    """pkg:deb/debian/NAME@VERSION?arch=ARCH (as debsbom and Trivy write it), pkg:apk/alpine/..."""
    kind, namespace = ("deb", "debian") if package.manager == "dpkg" else ("apk", "alpine")
    return PackageURL(kind, namespace, package.name, package.version, {"arch": package.architecture})


def _dpkg_md5sums(files: ImageFiles, package: InstalledPackage) -> dict[str, FileHash]:
    candidates = (
        DPKG_INFO / f"{package.name}:{package.architecture}.md5sums",
        DPKG_INFO / f"{package.name}.md5sums",
        DPKG_STATUS_DIR / f"{package.name}.md5sums",
    )
    for md5sums in (path for path in candidates if path in files.paths):
        pairs = (line.split("  ", 1) for line in files.read(md5sums).decode("utf-8", "replace").splitlines())
        return {f"/{path}": FileHash(HashAlgorithm.MD5.value, digest) for digest, path in pairs}
    return {}


def _python_distribution(files: ImageFiles, metadata: PurePosixPath) -> Iterator[_Package]:
    headers = HeaderParser().parsestr(files.read(metadata).decode("utf-8", "replace"))
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return
    record = metadata.with_name("RECORD")
    hashes = _record_hashes(files, record, metadata.parent.parent) if record in files.paths else {}
    normalized = re.sub(r"[-_.]+", "-", name).lower()
    yield _component(name, version, PackageURL("pypi", None, normalized, version), hashes)


def _record_hashes(files: ImageFiles, record: PurePosixPath, site: PurePosixPath) -> dict[str, FileHash]:
    """RECORD lines `path,sha256=<urlsafe base64>,size`, paths relative to site-packages."""
    hashes = {}
    for line in files.read(record).decode("utf-8", "replace").splitlines():
        path, _, rest = line.partition(",")
        algorithm, _, digest = rest.partition(",")[0].partition("=")
        if algorithm == "sha256" and digest:
            raw = base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4))
            if site / path in files.paths:  # of a slimmed image: the files it kept
                hashes[str(site / path)] = FileHash(HashAlgorithm.SHA_256.value, raw.hex())
    return hashes


def _is_npm_package_dir(directory: PurePosixPath) -> bool:
    parent = directory.parent
    return parent.name == "node_modules" or (parent.name.startswith("@") and parent.parent.name == "node_modules") or (
        parent == P("/usr/share/nodejs")
    )


def _npm_package(files: ImageFiles, path: PurePosixPath) -> Iterator[_Package]:
    try:
        manifest = json.loads(files.read(path))
    except ValueError:
        return
    if not isinstance(manifest, dict):
        return
    name, version = manifest.get("name"), manifest.get("version")
    if isinstance(name, str) and isinstance(version, str) and name and version:
        scope, _, bare = name.rpartition("/")
        yield _component(name, version, PackageURL("npm", scope or None, bare, version), {}, location=path.parent)


def _gem(path: PurePosixPath) -> Iterator[_Package]:
    name, _, version = path.stem.rpartition("-")
    if name and version:
        yield _component(name, version, PackageURL("gem", None, name, version), {}, location=path)


class FileHash(NamedTuple):
    algorithm: str  # as CycloneDX names it: "MD5", "SHA-256"
    hex: str


@dataclass(frozen=True)
class _Package:
    component: Component
    files: list[dict]  # CycloneDX file components, as JSON, in path order


def _component(
    name: str,
    version: str,
    purl: PackageURL,
    hashes: dict[str, FileHash],
    source: str = "",
    location: PurePosixPath | None = None,
) -> _Package:
    # Two copies of one npm package version in different places are two components: the place tells them apart.
    ref = purl.to_string() + (f"#{location}" if location else "")
    properties = [Property(name=f"{PROPERTY_PREFIX}source-package", value=source)] if source else []
    if location:
        properties.append(Property(name=f"{PROPERTY_PREFIX}location", value=str(location)))
    component = Component(
        type=ComponentType.LIBRARY, name=name, version=version, purl=purl, bom_ref=ref, properties=properties
    )
    files = [
        {"bom-ref": f"{ref}|{path}", "hashes": [{"alg": digest.algorithm, "content": digest.hex}],
         "name": path, "type": ComponentType.FILE.value}
        for path, digest in sorted(hashes.items())
    ]
    return _Package(component, files)
