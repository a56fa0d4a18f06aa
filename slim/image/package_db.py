"""The OS package databases of a slimmed image, trimmed to the packages it still holds (issue 12).

Scanners (Trivy, Grype, Docker Scout, debsbom) find packages through the package manager's database and
match vulnerabilities by name and version. A slimmed image without that database looks clean because it
cannot be scanned; one with the original database claims packages it no longer has. So the slimmed image
gets the database entries of exactly the packages at least one of whose payload files it keeps (documentation
and copyright alone do not count), byte for byte as the original has them, with their file lists trimmed to
the kept files; `/usr/share/doc/PKG/copyright` of each kept package comes along (what distroless keeps).

dpkg (`/var/lib/dpkg/status` with `info/PKG.list` and `.md5sums`, and distroless' `status.d/`) and apk
(`/lib/apk/db/installed`) are read; an rpm database needs the rpm tool to read and is reported unsupported.
Pure logic over the rootfs index and the set of kept paths: the closure calls it and keeps what it names.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from slim.model import EntryKind, InstalledPackage, PackageSummary, under_any
from .rootfs import RootFS

P = PurePosixPath
DPKG_DIR = P("/var/lib/dpkg")
DPKG_STATUS = DPKG_DIR / "status"
DPKG_INFO = DPKG_DIR / "info"
DPKG_STATUS_DIR = P("/var/lib/dpkg/status.d")  # distroless: one stanza per file, no info/ directory
APK_INSTALLED = P("/lib/apk/db/installed")
RPM_DATABASES = (P("/var/lib/rpm"), P("/usr/lib/sysimage/rpm"))
# What dpkg reads besides the entries: its directories (it refuses to run without updates/), info/format
# (without it, info/ is taken for the old layout and libc6:amd64.list is looked for as libc6.list) and arch.
DPKG_ARCH_NATIVE = DPKG_DIR / "arch-native"
DPKG_SUPPORT = (
    DPKG_DIR, DPKG_INFO, DPKG_DIR / "updates", DPKG_STATUS_DIR, DPKG_INFO / "format", DPKG_DIR / "arch",
    DPKG_ARCH_NATIVE,
)
# A package's files that say what it is rather than do its work: keeping only these keeps no package.
INSTALLED = " installed"  # the last word of an installed package's Status
DOC_TREES = tuple(
    P(p) for p in ("/usr/share/doc", "/usr/share/man", "/usr/share/info", "/usr/share/lintian", "/usr/share/licenses")
)


@dataclass(frozen=True)
class _Stanza:
    package: InstalledPackage
    text: str  # the paragraph exactly as the database holds it, without the blank line after it
    database: PurePosixPath  # the status file, or its own file in status.d/
    file_list: PurePosixPath | None  # info/PKG.list, when the database has one
    md5sums: PurePosixPath | None


@dataclass(frozen=True)
class TrimmedDatabases:
    summary: PackageSummary
    rewritten: dict[PurePosixPath, bytes]  # status files, trimmed; arch-native, which the original may lack
    support: tuple[PurePosixPath, ...]  # what the databases need besides entries, kept unchanged
    licenses: dict[PurePosixPath, str]  # copyright file -> the package it belongs to
    kept_stanzas: tuple[_Stanza, ...]

    def file_lists(self, rootfs: RootFS, kept: Collection[PurePosixPath]) -> dict[PurePosixPath, bytes]:
        """info/PKG.list and md5sums of the kept packages trimmed to the paths `kept` holds: call it with
        the final kept set (licenses and their directories included), the lists name those too."""
        is_kept = _KeptFiles(rootfs, kept)
        files: dict[PurePosixPath, bytes] = {}
        for stanza in self.kept_stanzas:
            if stanza.file_list is not None:
                files[stanza.file_list] = _lines(_list_paths(rootfs, stanza.file_list), is_kept.listed)
            if stanza.md5sums is not None:
                files[stanza.md5sums] = _lines(_md5sum_lines(rootfs, stanza.md5sums), is_kept.md5sum)
        return files


def database_manager(path: PurePosixPath) -> str:
    """The package manager a database path belongs to."""
    return "apk" if under_any(path, (APK_INSTALLED.parent,)) else "dpkg"


def trim_databases(rootfs: RootFS, kept: Collection[PurePosixPath]) -> TrimmedDatabases:
    """The package databases for an image that keeps `kept` (paths as the index names them)."""
    is_kept = _KeptFiles(rootfs, kept)
    found = _dpkg_status(rootfs) + _dpkg_status_dir(rootfs)
    kept_stanzas = tuple(s for s in found if _keeps_payload(rootfs, s, is_kept))
    rewritten: dict[PurePosixPath, bytes] = {}
    if rootfs.get(DPKG_STATUS) is not None:
        rewritten[DPKG_STATUS] = _paragraphs([s.text for s in kept_stanzas if s.database == DPKG_STATUS])
        rewritten |= _arch_native(rootfs, found)
    for stanza in kept_stanzas:
        if stanza.database != DPKG_STATUS:
            rewritten[stanza.database] = rootfs.read(stanza.database)  # a status.d stanza, unchanged
    apk_kept, apk_removed, apk_text = _trim_apk(rootfs, is_kept)
    if apk_text is not None:
        rewritten[APK_INSTALLED] = apk_text
    summary = PackageSummary(
        kept=tuple(s.package for s in kept_stanzas) + apk_kept,
        removed=tuple(s.package for s in found if s not in kept_stanzas) + apk_removed,
        unsupported=tuple(str(p) for p in RPM_DATABASES if rootfs.get(p) is not None),
    )
    return TrimmedDatabases(
        summary=summary,
        rewritten=rewritten,
        support=tuple(p for p in DPKG_SUPPORT if rootfs.get(p) is not None) if found else (),
        licenses=_licenses(rootfs, kept_stanzas),
        kept_stanzas=kept_stanzas,
    )


# ---------------------------------------------------------------- what counts as kept


class _KeptFiles:
    """Whether a path a database lists is in the slimmed image. Databases name paths as the package
    installed them (/lib/x86_64-linux-gnu/libc.so.6); with a merged /usr the index keeps the directories'
    resolved names, so every directory above is resolved inside the image first (not the last component:
    a listed symlink is kept as itself)."""

    def __init__(self, rootfs: RootFS, kept: Collection[PurePosixPath]):
        self.rootfs = rootfs
        self.kept = kept
        # Most listed paths are not kept; as the last component is never resolved, a kept one has the name
        # of a kept path, and the others need no walk through the image.
        self.kept_names = {path.name for path in kept}

    def kept_as(self, listed: str) -> PurePosixPath | None:
        """The kept path a listed one names in the image; None when the image keeps no such path."""
        name = listed.rpartition("/")[2]
        if not listed.startswith("/") or (name not in self.kept_names and name not in ("", ".", "..")):
            return None
        entry = self.rootfs.entry_at(listed, follow_last=False)
        return entry.path if entry is not None and entry.path in self.kept else None

    def listed(self, line: str) -> bool:
        return self.kept_as(line) is not None

    def payload(self, line: str) -> bool:
        path = self.kept_as(line)
        if path is None or under_any(path, DOC_TREES):
            return False
        # Directories are shared by packages, also where a merged /usr made them symlinks (/bin -> usr/bin).
        return not _is_dir(self.rootfs, self.rootfs.resolve(path).path)

    def md5sum(self, line: str) -> bool:
        # "<md5>  usr/bin/x": paths relative to the root
        return self.listed("/" + line.partition("  ")[2])


def _keeps_payload(rootfs: RootFS, stanza: _Stanza, is_kept: _KeptFiles) -> bool:
    if stanza.file_list is not None:
        return any(is_kept.payload(line) for line in _list_paths(rootfs, stanza.file_list))
    if stanza.md5sums is not None:
        return any(is_kept.payload("/" + line.partition("  ")[2]) for line in _md5sum_lines(rootfs, stanza.md5sums))
    return True  # no file list to judge by: claiming the package is the side that never hides a finding


def _is_dir(rootfs: RootFS, path: PurePosixPath) -> bool:
    entry = rootfs.get(path)
    return entry is not None and entry.kind is EntryKind.DIR


# ---------------------------------------------------------------- dpkg


def _dpkg_status(rootfs: RootFS) -> list[_Stanza]:
    text = _text(rootfs, DPKG_STATUS)
    if text is None:
        return []
    stanzas = []
    for paragraph in _split_paragraphs(text):
        package = _dpkg_package(paragraph)
        if package is not None and _is_installed(paragraph):  # not a removed package's leftover conffiles
            file_list, md5sums = _info_file(rootfs, package, "list"), _info_file(rootfs, package, "md5sums")
            stanzas.append(_Stanza(package, paragraph, DPKG_STATUS, file_list, md5sums))
    return stanzas


def _arch_native(rootfs: RootFS, stanzas: list[_Stanza]) -> dict[PurePosixPath, bytes]:
    """dpkg's native architecture, which dpkg 1.22 writes to arch-native and older dpkg only knows from
    its own package: when that package is not kept, readers of the database (debsbom) learn it here."""
    dpkg = next((s.package for s in stanzas if s.package.name == "dpkg"), None)
    if rootfs.get(DPKG_ARCH_NATIVE) is not None or dpkg is None:
        return {}
    return {DPKG_ARCH_NATIVE: f"{dpkg.architecture}\n".encode()}


def _dpkg_status_dir(rootfs: RootFS) -> list[_Stanza]:
    """distroless' status.d/: a file per package holding its stanza, and NAME.md5sums next to it."""
    if not _is_dir(rootfs, DPKG_STATUS_DIR):
        return []
    stanzas = []
    for path in rootfs.children(DPKG_STATUS_DIR):
        text = _text(rootfs, path) if "." not in path.name else None
        package = _dpkg_package(text) if text is not None else None
        if package is not None and _is_installed(text):
            md5sums = path.with_name(f"{path.name}.md5sums")
            stanzas.append(_Stanza(package, text, path, None, md5sums if rootfs.get(md5sums) is not None else None))
    return stanzas


@dataclass(frozen=True)
class _FieldNames:
    """Which field of a database format's record holds what InstalledPackage has."""

    manager: str
    name: str
    version: str
    architecture: str
    source: str  # dpkg writes "NAME (VERSION)" when the source's version differs
    size: str
    size_unit: int  # bytes per unit of the size field


_DPKG_FIELDS = _FieldNames("dpkg", "Package", "Version", "Architecture", "Source", "Installed-Size", 1024)
_APK_FIELDS = _FieldNames("apk", "P", "V", "A", "o", "I", 1)


def _package(fields: dict[str, str], names: _FieldNames) -> InstalledPackage | None:
    name = fields.get(names.name)
    if name is None:
        return None
    source = fields.get(names.source, "").split(" ", 1)[0]
    size = fields.get(names.size, "")
    return InstalledPackage(
        manager=names.manager,
        name=name,
        version=fields.get(names.version, ""),
        architecture=fields.get(names.architecture, ""),
        source=source if source != name else "",
        installed_size=int(size) * names.size_unit if size.isdigit() else None,
    )


def _dpkg_package(paragraph: str) -> InstalledPackage | None:
    return _package(deb822_fields(paragraph), _DPKG_FIELDS)


def original_packages(rootfs: RootFS) -> list[InstalledPackage]:
    """Every installed package the image's databases name."""
    status_d = rootfs.children(DPKG_STATUS_DIR) if _is_dir(rootfs, DPKG_STATUS_DIR) else []
    databases = [DPKG_STATUS, APK_INSTALLED] + status_d
    texts = ((database, _text(rootfs, database)) for database in databases if "." not in database.name)
    return [package for database, text in texts if text is not None for package in installed_packages(database, text)]


def dpkg_owned_paths(rootfs: RootFS, under: PurePosixPath) -> frozenset[PurePosixPath]:
    """Every path below `under` that an installed dpkg package lists as its own (its info/PKG.list)."""
    prefix = str(under).rstrip("/") + "/"
    owned: set[PurePosixPath] = set()
    for package in original_packages(rootfs):
        if package.manager == "dpkg" and (listing := _info_file(rootfs, package, "list")) is not None:
            owned.update(PurePosixPath(line) for line in _list_paths(rootfs, listing) if line.startswith(prefix))
    return frozenset(owned)


def installed_packages(database: PurePosixPath, text: str) -> list[InstalledPackage]:
    """The installed packages a database file names: the dpkg status file or a status.d stanza, or apk's."""
    if database == APK_INSTALLED:
        return [package for package in map(_apk_package, _split_paragraphs(text)) if package is not None]
    paragraphs = (p for p in _split_paragraphs(text) if _is_installed(p))
    return [package for package in map(_dpkg_package, paragraphs) if package is not None]


def _is_installed(paragraph: str) -> bool:
    # distroless' stanzas may have no Status: a package it lists is installed.
    return deb822_fields(paragraph).get("Status", INSTALLED).endswith(INSTALLED)


def deb822_fields(paragraph: str) -> dict[str, str]:
    """The single-line fields of one RFC 822-style paragraph (continuation lines are skipped)."""
    fields: dict[str, str] = {}
    for line in paragraph.splitlines():
        if line[:1] in (" ", "\t") or ":" not in line:
            continue
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields


def _info_file(rootfs: RootFS, package: InstalledPackage, suffix: str) -> PurePosixPath | None:
    # Multi-Arch: same packages are named PKG:ARCH in info/ (libc6:amd64.list), the others PKG.
    for name in (f"{package.name}:{package.architecture}.{suffix}", f"{package.name}.{suffix}"):
        path = DPKG_INFO / name
        if rootfs.get(path) is not None:
            return path
    return None


def _list_paths(rootfs: RootFS, path: PurePosixPath) -> list[str]:
    return (_text(rootfs, path) or "").splitlines()


def _md5sum_lines(rootfs: RootFS, path: PurePosixPath) -> list[str]:
    return [line for line in (_text(rootfs, path) or "").splitlines() if "  " in line]


def _licenses(rootfs: RootFS, stanzas: Iterable[_Stanza]) -> dict[PurePosixPath, str]:
    licenses = {}
    for stanza in stanzas:
        resolved = rootfs.resolve(P("/usr/share/doc") / stanza.package.name / "copyright")
        entry = rootfs.get(resolved.path) if resolved.exists else None
        if entry is not None and entry.kind is EntryKind.FILE:
            licenses[P("/usr/share/doc") / stanza.package.name / "copyright"] = stanza.package.name
    return licenses


# ---------------------------------------------------------------- apk


def _trim_apk(
    rootfs: RootFS, is_kept: _KeptFiles
) -> tuple[tuple[InstalledPackage, ...], tuple[InstalledPackage, ...], bytes | None]:
    """apk's installed database: one record per package, "X:value" lines; F: names a directory (relative
    to the root), the R: lines after it its files, each followed by its a:/M:/Z: attribute lines."""
    text = _text(rootfs, APK_INSTALLED)
    if text is None:
        return (), (), None
    kept, removed, records = [], [], []
    for record in _split_paragraphs(text):
        package = _apk_package(record)
        if package is None:
            continue
        trimmed, payload = _trim_apk_record(record, is_kept)
        (kept if payload else removed).append(package)
        if payload:
            records.append(trimmed)
    return tuple(kept), tuple(removed), _paragraphs(records)


def _apk_package(record: str) -> InstalledPackage | None:
    fields: dict[str, str] = {}
    for line in record.splitlines():
        fields.setdefault(line[:1], line[2:])
    return _package(fields, _APK_FIELDS)


def _trim_apk_record(record: str, is_kept: _KeptFiles) -> tuple[str, bool]:
    """The record with only its kept directories and files, and whether it keeps a payload file."""
    lines: list[str] = []
    directory = ""
    keeping = True  # header lines, and the attributes of a kept F: or R: line
    payload = False
    for line in record.splitlines():
        key, value = line[:1], line[2:]
        if key == "F":
            directory = value
            keeping = is_kept.listed(f"/{value}")
        elif key == "R":
            path = f"/{directory}/{value}" if directory else f"/{value}"
            keeping = is_kept.listed(path)
            payload = payload or is_kept.payload(path)
        elif key not in ("a", "M", "Z"):
            keeping = True
        if keeping:
            lines.append(line)
    return "\n".join(lines), payload


# ---------------------------------------------------------------- text


def _text(rootfs: RootFS, path: PurePosixPath) -> str | None:
    entry = rootfs.get(path)
    if entry is None or entry.kind is not EntryKind.FILE:
        return None
    # surrogateescape: bytes that are not UTF-8 go back out exactly as they came in.
    return rootfs.read(path).decode("utf-8", "surrogateescape")


def _split_paragraphs(text: str) -> list[str]:
    return [p.strip("\n") for p in text.split("\n\n") if p.strip("\n")]


def _paragraphs(paragraphs: list[str]) -> bytes:
    return "".join(f"{p}\n\n" for p in paragraphs).encode("utf-8", "surrogateescape")


def _lines(lines: list[str], keep: Callable[[str], bool]) -> bytes:
    return "".join(f"{line}\n" for line in lines if keep(line)).encode("utf-8", "surrogateescape")
