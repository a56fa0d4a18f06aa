"""`slim xray IMAGE`: what is in an image, without running it.

One XRay value feeds the text and JSON renderers: the layers and the step that made each, the largest
directories, the bytes that layers ship but the final filesystem hides (files overwritten or deleted by a
later layer: dive's "wasted space"), the ELF files with what the loader resolves their libraries to, the OS
packages, and the setuid/setgid/capability files.

    efficiency = 1 - wasted / total

where `total` is every file byte of every layer and `wasted` the part of it no container ever sees.
"""
from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from slim.build.closure import DEFAULT_PATH, elf_dependencies
from slim.image.elf import ELF_MAGIC, MalformedElf, read_elf
from slim.engine import Engine
from slim.model import ROOT, EntryKind, FileEntry, ImageFacts, InstalledPackage
from slim.ownership import enter_temp_dir
from slim.image.overlay import Overlay
from slim.image.package_db import APK_INSTALLED, DPKG_STATUS, DPKG_STATUS_DIR, installed_packages
from slim.image.rootfs import LayerIndex, RootFS, index_layers, layer_steps, source_image

CAPABILITY_XATTR = "security.capability"
LARGEST_DIRS = 20
LARGEST_DIR_DEPTH = 3  # /usr/lib/x86_64-linux-gnu is deep enough to point at the cost

StageCallback = Callable[[str], None]


@dataclass(frozen=True)
class Layer:
    index: int  # 0 = bottom
    diff_id: str
    created_by: str  # the build step, verbatim from the image history ("" for an imported layer)
    size: int  # bytes of the files this layer adds or replaces
    files: int
    deletions: int  # whiteouts and opaque directories: paths of lower layers it deletes
    tar_size: int


@dataclass(frozen=True)
class Waste:
    """Bytes of lower layers that `path` hides: files it overwrote or deleted (a directory: all below it)."""

    path: str
    how: str  # "overwritten", "deleted", or both joined by ", "
    layers: tuple[int, ...]  # the layers that overwrote or deleted it
    bytes: int
    files: int


@dataclass(frozen=True)
class DirSize:
    path: str
    bytes: int  # every file below it
    files: int


@dataclass(frozen=True)
class ElfFile:
    path: str
    kind: str  # "executable" or "library"
    size: int
    interpreter: str | None
    static: bool
    needed: tuple[tuple[str, str | None], ...]  # (DT_NEEDED name, the file it resolves to or None)

    @property
    def unresolved(self) -> tuple[str, ...]:
        return tuple(name for name, found in self.needed if found is None)


@dataclass(frozen=True)
class PrivilegedFile:
    path: str
    mode: str  # octal permission bits, e.g. "4755"
    owner: str  # "uid:gid"
    setuid: bool
    setgid: bool
    capabilities: bool  # carries security.capability


@dataclass(frozen=True)
class XRay:
    ref: str
    id: str
    size: int  # as the engine counts it
    os: str
    architecture: str
    created: str
    command: tuple[str, ...]  # Entrypoint + Cmd
    user: str
    layers: tuple[Layer, ...]
    files: int  # regular files in the final filesystem
    total_bytes: int  # every file byte of every layer
    wasted_bytes: int  # of which no container sees
    efficiency: float
    waste: tuple[Waste, ...]  # largest first
    largest_dirs: tuple[DirSize, ...]
    elf: tuple[ElfFile, ...]  # sorted by path
    entrypoint_elf: str | None  # the ELF file the command starts, if it is one
    packages: tuple[InstalledPackage, ...]
    privileged: tuple[PrivilegedFile, ...]
    warnings: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema_version"] = 1
        for item in data["elf"]:
            item["needed"] = [{"name": name, "path": found} for name, found in item["needed"]]
        for item in data["packages"]:  # xray's schema names no source package
            del item["source"]
        return data


# ---------------------------------------------------------------- the command's stages


def xray(engine: Engine, ref: str, on_stage: StageCallback = lambda _: None) -> XRay:
    with contextlib.ExitStack() as cleanup:
        workdir = enter_temp_dir(cleanup, "xray")
        on_stage("inspect")
        facts = engine.inspect_image(ref)
        on_stage("read")
        source = source_image(engine, facts.id, workdir)
        on_stage("index")
        rootfs, layers = index_layers(source.layers)
        on_stage("analyse")
        return analyse(facts, source.config, rootfs, layers)


def analyse(facts: ImageFacts, config: Mapping[str, Any], rootfs: RootFS, layers: Sequence[LayerIndex]) -> XRay:
    """Everything xray reports, from the image's facts, saved config, merged view and layer listings."""
    warnings: list[str] = []
    waste = _waste(layers)
    total = sum(_layer_bytes(layer) for layer in layers)
    wasted = sum(item.bytes for item in waste.values())
    elf, elf_warnings = _elf_files(rootfs, facts)
    warnings += elf_warnings
    history = layer_steps(config, len(layers))
    if history is None:
        warnings.append("the image history does not match its layers; build steps are not shown")
    packages, package_warnings = _packages(rootfs)
    warnings += package_warnings
    return XRay(
        ref=facts.ref,
        id=facts.id,
        size=facts.size,
        os=facts.os,
        architecture=facts.architecture,
        created=facts.created,
        command=facts.command,
        user=facts.user,
        layers=tuple(
            Layer(
                index=number,
                diff_id=facts.layer_diff_ids[number] if number < len(facts.layer_diff_ids) else "",
                created_by=history[number] if history else "",
                size=_layer_bytes(layer),
                files=sum(1 for e in layer.entries.values() if e.kind is EntryKind.FILE),
                deletions=len(layer.whiteouts) + len(layer.opaque),
                tar_size=layer.tar.size,
            )
            for number, layer in enumerate(layers)
        ),
        files=sum(1 for e in rootfs.entries.values() if e.kind is EntryKind.FILE),
        total_bytes=total,
        wasted_bytes=wasted,
        efficiency=round(1 - wasted / total, 4) if total else 1.0,
        waste=tuple(sorted(waste.values(), key=lambda w: (-w.bytes, w.path))),
        largest_dirs=_largest_dirs(rootfs),
        elf=elf,
        entrypoint_elf=_entrypoint_elf(rootfs, facts, {e.path for e in elf}),
        packages=packages,
        privileged=_privileged(rootfs),
        warnings=tuple(warnings),
    )


# ---------------------------------------------------------------- layers and wasted bytes


def _layer_bytes(layer: LayerIndex) -> int:
    return sum(_stored_bytes(layer, path, entry) for path, entry in layer.entries.items())


class _Stored(NamedTuple):
    kind: EntryKind
    size: int  # the bytes its layer stored for it (0 for a hard link's second name)


def _waste(layers: Sequence[LayerIndex]) -> dict[str, Waste]:
    """The layers stacked (slim.image.overlay), each path's hidden lower files counted against it."""
    overlay: Overlay[_Stored] = Overlay(lambda _: _Stored(EntryKind.DIR, 0))
    waste: dict[str, Waste] = {}
    for number, layer in enumerate(layers):
        members = (
            (str(path), _Stored(entry.kind, _stored_bytes(layer, path, entry))) for path, entry in layer.entries.items()
        )
        for hidden in overlay.apply(map(str, layer.opaque), map(str, layer.whiteouts), members):
            sizes = [stored.size for stored in hidden.values if stored.kind is EntryKind.FILE]
            if sizes:
                more = Waste(hidden.path, hidden.how.value, (number,), sum(sizes), len(sizes))
                waste[hidden.path] = _counted(waste.get(hidden.path), more)
    return waste


def _stored_bytes(layer: LayerIndex, path: PurePosixPath, entry: FileEntry) -> int:
    return entry.size if entry.kind is EntryKind.FILE and path not in layer.shared_data else 0


def _counted(before: Waste | None, more: Waste) -> Waste:
    """`more` hidden at a path where `before` already was: one row, every way and layer named once."""
    if before is None:
        return more
    hows = before.how.split(", ")
    return Waste(
        more.path,
        ", ".join(hows + [more.how] if more.how not in hows else hows),
        tuple(sorted(set(before.layers) | set(more.layers))),
        before.bytes + more.bytes,
        before.files + more.files,
    )


# ---------------------------------------------------------------- the final filesystem


def _files(rootfs: RootFS) -> Iterable[FileEntry]:
    """Regular files, each inode once (the first name of a hard-link group stands for it)."""
    for entry in rootfs.entries.values():
        if entry.kind is EntryKind.FILE and (not entry.hardlink_group or entry.hardlink_group[0] == entry.path):
            yield entry


def _largest_dirs(rootfs: RootFS) -> tuple[DirSize, ...]:
    sizes: Counter[PurePosixPath] = Counter()
    counts: Counter[PurePosixPath] = Counter()
    for entry in _files(rootfs):
        for parent in entry.path.parents:
            if parent != ROOT and len(parent.parts) - 1 <= LARGEST_DIR_DEPTH:
                sizes[parent] += entry.size
                counts[parent] += 1
    ranked = sorted(sizes, key=lambda p: (-sizes[p], str(p)))[:LARGEST_DIRS]
    return tuple(DirSize(str(p), sizes[p], counts[p]) for p in ranked)


def _elf_files(rootfs: RootFS, facts: ImageFacts) -> tuple[tuple[ElfFile, ...], list[str]]:
    warnings = []
    infos = {}
    for entry in rootfs.entries.values():
        if entry.kind is not EntryKind.FILE or entry.size < len(ELF_MAGIC):
            continue
        with rootfs.open(entry.path) as data:
            if data.read(len(ELF_MAGIC)) != ELF_MAGIC:
                continue
            try:
                info = read_elf(data, entry.path)
            except MalformedElf as e:
                warnings.append(e.message)
                continue
        if info is not None:
            infos[entry.path] = (entry, info)
    # The loader's own search (slim.build.closure), so xray and build agree on what a library resolves to.
    needed = elf_dependencies(rootfs, facts, infos)
    files = []
    for path, (entry, info) in sorted(infos.items()):
        runs = info.interp is not None or (info.is_static and bool(entry.mode & 0o111))
        files.append(
            ElfFile(
                path=str(path),
                kind="executable" if runs and not info.soname else "library",
                size=entry.size,
                interpreter=info.interp,
                static=info.is_static,
                needed=tuple((name, str(found) if found else None) for name, found in needed.get(path, ())),
            )
        )
    return tuple(files), warnings


def _entrypoint_elf(rootfs: RootFS, facts: ImageFacts, elf: set[str]) -> str | None:
    """The ELF file the image's command starts (execvp's PATH search), when it starts one directly."""
    if not facts.command:
        return None
    name = facts.command[0]
    path = facts.env.get("PATH", DEFAULT_PATH)
    candidates = [PurePosixPath(name)] if "/" in name else [PurePosixPath(d) / name for d in path.split(":") if d]
    for candidate in candidates:
        resolved = rootfs.resolve(candidate, cwd=facts.working_dir)
        if resolved.exists and str(resolved.path) in elf:
            return str(resolved.path)
    return None


def _privileged(rootfs: RootFS) -> tuple[PrivilegedFile, ...]:
    found = []
    for entry in rootfs.entries.values():
        capabilities = CAPABILITY_XATTR in entry.xattrs
        if entry.kind is EntryKind.FILE and (entry.mode & 0o6000 or capabilities):
            found.append(
                PrivilegedFile(
                    path=str(entry.path),
                    mode=f"{entry.mode:04o}",
                    owner=f"{entry.uid}:{entry.gid}",
                    setuid=bool(entry.mode & 0o4000),
                    setgid=bool(entry.mode & 0o2000),
                    capabilities=capabilities,
                )
            )
    return tuple(found)


# ---------------------------------------------------------------- package databases


def _packages(rootfs: RootFS) -> tuple[tuple[InstalledPackage, ...], list[str]]:
    packages: list[InstalledPackage] = []
    warnings: list[str] = []
    databases = [DPKG_STATUS] + [
        DPKG_STATUS_DIR / child.name for child in _children(rootfs, DPKG_STATUS_DIR)
    ]
    for database in databases + [APK_INSTALLED]:
        text = _read_text(rootfs, database)
        if text is not None:
            packages += installed_packages(database, text)
    return tuple(sorted(packages, key=lambda p: (p.manager, p.name, p.architecture))), warnings


def _children(rootfs: RootFS, directory: PurePosixPath) -> list[PurePosixPath]:
    resolved = rootfs.resolve(directory)
    return rootfs.children(resolved.path) if resolved.exists else []


def _read_text(rootfs: RootFS, path: PurePosixPath) -> str | None:
    resolved = rootfs.resolve(path)
    entry = rootfs.get(resolved.path) if resolved.exists else None
    if entry is None or entry.kind is not EntryKind.FILE:
        return None
    return rootfs.read(resolved.path).decode("utf-8", "replace")
