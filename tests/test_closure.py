"""compute_closure on small images made here from real host ELF files, plus one comparison with `ldd`
run inside the fixture images."""
import dataclasses
import io
import subprocess
import tarfile
import time
from pathlib import Path, PurePosixPath

import pytest

from slim.closure import MAX_REASONS, ClosureOptions, compute_closure
from slim.model import (
    Access,
    Closure,
    EntryKind,
    ImageFacts,
    Reason,
    ReasonKind,
    RunOutcome,
    Trace,
    TracedPath,
    TraceHealth,
)
from slim.rootfs import RootFS, spool_image
from test_elf import TINY_APP_C, build_tiny_app, build_tiny_lib, fake_elf32, gcc

P = PurePosixPath
HOST_LIBS = Path("/usr/lib/x86_64-linux-gnu")
IMAGE_LIBS = "/usr/lib/x86_64-linux-gnu"
LOADER = f"{IMAGE_LIBS}/ld-linux-x86-64.so.2"
LIBC = f"{IMAGE_LIBS}/libc-2.36.so"  # the real file; libc.so.6 is a symlink to it, as in older glibcs
NO_ALWAYS = ClosureOptions(always_keep=())


class Layer:
    """A layer tar under construction: host files and literal bytes at chosen image paths."""

    def __init__(self) -> None:
        self.members: list[tuple[tarfile.TarInfo, bytes | None]] = []

    def add(self, path: str, kind: bytes, *, data: bytes | None = None, link: str = "", mode: int = 0o755) -> None:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.type, info.mode, info.linkname, info.mtime = kind, mode, link, 1700000000
        if data is not None:
            info.size = len(data)
        self.members.append((info, data))

    def file(self, path: str, data: bytes, mode: int = 0o755) -> None:
        self.add(path, tarfile.REGTYPE, data=data, mode=mode)

    def host(self, path: str, source: Path | str) -> None:
        self.file(path, Path(source).read_bytes())

    def symlink(self, path: str, target: str) -> None:
        self.add(path, tarfile.SYMTYPE, link=target, mode=0o777)

    def hardlink(self, path: str, target: str) -> None:
        self.add(path, tarfile.LNKTYPE, link=target.lstrip("/"))

    def directory(self, path: str, mode: int = 0o755) -> None:
        self.add(path, tarfile.DIRTYPE, mode=mode)

    def rootfs(self, tmp_path: Path) -> RootFS:
        tar_path = tmp_path / f"layer-{len(list(tmp_path.glob('layer-*.tar')))}.tar"
        with tarfile.open(tar_path, "w") as tar:
            for info, data in self.members:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return RootFS.from_layers([tar_path])


def debian_like() -> Layer:
    """A usr-merged Debian-style root: /lib -> usr/lib, /lib64 -> usr/lib64, ld.so.conf.d, libc via a
    symlink, and a loader reached through two symlinks, with ls, bash and env from the host."""
    layer = Layer()
    for d in ("/usr/bin", "/usr/sbin", IMAGE_LIBS, "/usr/lib64", "/etc/ld.so.conf.d", "/opt", "/var"):
        layer.directory(d)
    for link, target in (("/bin", "usr/bin"), ("/sbin", "usr/sbin"), ("/lib", "usr/lib"), ("/lib64", "usr/lib64")):
        layer.symlink(link, target)
    layer.symlink("/usr/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    layer.host(LOADER, HOST_LIBS / "ld-linux-x86-64.so.2")
    layer.host(LIBC, HOST_LIBS / "libc.so.6")
    layer.symlink(f"{IMAGE_LIBS}/libc.so.6", "libc-2.36.so")
    for lib in ("libselinux.so.1", "libpcre2-8.so.0", "libtinfo.so.6"):
        layer.host(f"{IMAGE_LIBS}/{lib}", (HOST_LIBS / lib).resolve())
    for tool in ("ls", "bash", "env"):
        layer.host(f"/usr/bin/{tool}", f"/usr/bin/{tool}")
    layer.file("/etc/ld.so.conf", b"include /etc/ld.so.conf.d/*.conf\n", mode=0o644)
    layer.file(
        "/etc/ld.so.conf.d/x86_64-linux-gnu.conf",
        b"# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n",
        mode=0o644,
    )
    layer.file("/etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n", mode=0o644)
    layer.file("/etc/group", b"root:x:0:\n", mode=0o644)
    layer.file("/usr/lib/os-release", b'ID=debian\n', mode=0o644)
    layer.symlink("/etc/os-release", "../usr/lib/os-release")
    return layer


def facts_with(**config) -> ImageFacts:
    return ImageFacts(
        ref="test", id="sha256:test", repo_tags=(), size=0, os="linux", architecture="amd64",
        created="", layer_diff_ids=(), config=config,
    )


def trace_of(*paths: str, access: Access = Access.OPEN) -> Trace:
    traced = tuple(TracedPath(P(p), frozenset({access}), "/usr/bin/prog", "startup") for p in paths)
    return Trace(traced, TraceHealth(events=len(paths), overflow=False), RunOutcome("batch", 0, False, ()))


def closure_of(rootfs: RootFS, *paths: str, facts: ImageFacts | None = None, **options) -> Closure:
    merged = dataclasses.asdict(NO_ALWAYS) | options
    return compute_closure(trace_of(*paths), rootfs, facts or facts_with(), ClosureOptions(**merged))


def kinds(closure: Closure, path: str) -> list[ReasonKind]:
    return [r.kind for r in closure.kept[P(path)]]


def main_reason(closure: Closure, path: str) -> Reason:
    return closure.kept[P(path)][0]


# ---------------------------------------------------------------- the loader's rules


def test_libc_and_loader_through_usr_merge_symlinks(tmp_path):
    closure = closure_of(debian_like().rootfs(tmp_path), "/usr/bin/ls")
    assert closure.warnings == ()
    assert main_reason(closure, LOADER) == Reason(ReasonKind.ELF_INTERP, source="/usr/bin/ls")
    assert main_reason(closure, LIBC) == Reason(ReasonKind.ELF_NEEDED, source="/usr/bin/ls")
    # PT_INTERP /lib64/ld-linux-x86-64.so.2 -> usr/lib64/... -> /lib/x86_64-linux-gnu/... -> usr/lib/...
    for link, target in (("/lib64", LOADER), ("/usr/lib64/ld-linux-x86-64.so.2", LOADER), ("/lib", LOADER)):
        assert Reason(ReasonKind.SYMLINK, source=target) in closure.kept[P(link)]
    assert main_reason(closure, f"{IMAGE_LIBS}/libc.so.6") == Reason(ReasonKind.SYMLINK, source=LIBC)
    # Transitive: ls -> libselinux -> libpcre2.
    assert main_reason(closure, f"{IMAGE_LIBS}/libpcre2-8.so.0") == Reason(
        ReasonKind.ELF_NEEDED, source=f"{IMAGE_LIBS}/libselinux.so.1"
    )
    assert P("/usr/bin/bash") not in closure.kept


def test_ld_so_conf_include_glob_is_what_finds_multiarch_libraries(tmp_path):
    layer = debian_like()
    layer.file("/etc/ld.so.conf", b"# nothing included\n", mode=0o644)
    closure = closure_of(layer.rootfs(tmp_path), "/usr/bin/ls")
    assert "libc.so.6 needed by /usr/bin/ls not found in the image" in closure.warnings
    assert P(LIBC) not in closure.kept


def test_origin_runpath_binary(tmp_path):
    app, lib = build_tiny_app(tmp_path / "build", "-Wl,-rpath,$ORIGIN/lib")
    layer = debian_like()
    layer.host("/opt/app/bin/app", app)
    layer.host("/opt/app/bin/lib/libtiny.so.1", lib)
    closure = closure_of(layer.rootfs(tmp_path), "/opt/app/bin/app")
    assert closure.warnings == ()
    assert main_reason(closure, "/opt/app/bin/lib/libtiny.so.1") == Reason(
        ReasonKind.ELF_NEEDED, source="/opt/app/bin/app"
    )
    assert ReasonKind.ELF_NEEDED in kinds(closure, LIBC)


@pytest.mark.parametrize("entry", ["${ORIGIN}/../$LIB", "/opt/other/$LIB", "$ORIGIN/../$PLATFORM"])
def test_dynamic_string_tokens(tmp_path, entry):
    app, lib = build_tiny_app(tmp_path / "build", f"-Wl,-rpath,{entry}")
    lib_dir = {
        "${ORIGIN}/../$LIB": "/opt/app/lib/x86_64-linux-gnu",
        "/opt/other/$LIB": "/opt/other/lib64",
        "$ORIGIN/../$PLATFORM": "/opt/app/x86_64",
    }[entry]
    layer = debian_like()
    layer.host("/opt/app/bin/app", app)
    layer.host(f"{lib_dir}/libtiny.so.1", lib)
    closure = closure_of(layer.rootfs(tmp_path), "/opt/app/bin/app")
    assert closure.warnings == ()
    assert P(f"{lib_dir}/libtiny.so.1") in closure.kept


def build_chain(directory: Path, dtags: str) -> dict[str, Path]:
    """app (search path $ORIGIN/../lib) -> libtiny.so.1 (no search path) -> libinner.so.1."""
    lib_dir = directory / "lib"
    inner = gcc(lib_dir / "libinner.so.1", "int inner(void) { return 42; }\n",
                "-shared", "-fPIC", "-Wl,-soname,libinner.so.1")
    tiny = gcc(lib_dir / "libtiny.so.1", "int inner(void);\nint tiny(void) { return inner(); }\n",
               "-shared", "-fPIC", "-Wl,-soname,libtiny.so.1", f"-L{lib_dir}", "-l:libinner.so.1")
    app = gcc(directory / "bin/app", TINY_APP_C, f"-L{lib_dir}", "-l:libtiny.so.1", f"-Wl,-rpath-link,{lib_dir}",
              "-Wl,-rpath,$ORIGIN/../lib", dtags)
    return {"/opt/app/bin/app": app, "/opt/app/lib/libtiny.so.1": tiny, "/opt/app/lib/libinner.so.1": inner}


@pytest.mark.parametrize("dtags, loads", [("--disable-new-dtags", True), ("--enable-new-dtags", False)])
def test_executable_rpath_applies_to_its_libraries_but_runpath_does_not(tmp_path, dtags, loads):
    files = build_chain(tmp_path / "build", f"-Wl,{dtags}")
    # The host's own loader is the reference: DT_RPATH reaches libinner, DT_RUNPATH does not.
    assert (subprocess.run([files["/opt/app/bin/app"]], capture_output=True).returncode == 0) == loads
    layer = debian_like()
    for path, source in files.items():
        layer.host(path, source)
    closure = closure_of(layer.rootfs(tmp_path), "/opt/app/bin/app")
    assert (P("/opt/app/lib/libinner.so.1") in closure.kept) == loads
    missing = "libinner.so.1 needed by /opt/app/lib/libtiny.so.1 not found in the image"
    assert (missing in closure.warnings) == (not loads)


def test_library_read_alone_is_not_blamed_for_what_its_executable_rpath_finds(tmp_path):
    """The tracer reports libtiny too; read on its own it cannot find libinner, through app it can."""
    files = build_chain(tmp_path / "build", "-Wl,--disable-new-dtags")
    layer = debian_like()
    for path, source in files.items():
        layer.host(path, source)
    closure = closure_of(layer.rootfs(tmp_path), "/opt/app/lib/libtiny.so.1", "/opt/app/bin/app")
    assert closure.warnings == ()


def test_ld_library_path_from_the_image_env(tmp_path):
    layer = debian_like()
    layer.host("/opt/app/bin/app", build_tiny_app(tmp_path / "build")[0])
    layer.host("/opt/libs/libtiny.so.1", build_tiny_lib(tmp_path / "build"))
    facts = facts_with(Env=["LD_LIBRARY_PATH=/nowhere:/opt/libs"])
    closure = closure_of(layer.rootfs(tmp_path), "/opt/app/bin/app", facts=facts)
    assert closure.warnings == ()
    assert P("/opt/libs/libtiny.so.1") in closure.kept


def test_unresolved_needed_is_a_warning(tmp_path):
    layer = debian_like()
    layer.host("/opt/app/bin/app", build_tiny_app(tmp_path / "build", "-Wl,-rpath,$ORIGIN/lib")[0])
    closure = closure_of(layer.rootfs(tmp_path), "/opt/app/bin/app")
    assert closure.warnings == ("libtiny.so.1 needed by /opt/app/bin/app not found in the image",)
    assert main_reason(closure, "/opt/app/bin/app").kind is ReasonKind.TRACED


def test_32_bit_library_in_the_search_path_is_skipped(tmp_path):
    layer = debian_like()
    layer.file("/usr/local/lib/x86_64-linux-gnu/libc.so.6", fake_elf32())  # first ld.so.conf directory
    closure = closure_of(layer.rootfs(tmp_path), "/usr/bin/env")
    assert closure.warnings == ()
    assert P("/usr/local/lib/x86_64-linux-gnu/libc.so.6") not in closure.kept
    assert main_reason(closure, LIBC) == Reason(ReasonKind.ELF_NEEDED, source="/usr/bin/env")


def test_only_a_32_bit_library_is_not_found(tmp_path):
    layer = Layer()
    layer.host("/usr/bin/env", "/usr/bin/env")
    layer.file("/lib64/libc.so.6", fake_elf32())
    closure = closure_of(layer.rootfs(tmp_path), "/usr/bin/env")
    assert "libc.so.6 needed by /usr/bin/env not found in the image" in closure.warnings
    assert P("/lib64/libc.so.6") not in closure.kept


def test_malformed_elf_is_a_warning_naming_the_file(tmp_path):
    layer = debian_like()
    layer.file("/usr/bin/broken", Path("/usr/bin/ls").read_bytes()[:1000])
    closure = closure_of(layer.rootfs(tmp_path), "/usr/bin/broken", "/usr/bin/ls")
    assert closure.warnings == ("malformed ELF /usr/bin/broken: PT_DYNAMIC extends past the end of the file",)
    assert main_reason(closure, "/usr/bin/broken").kind is ReasonKind.TRACED
    assert P(LIBC) in closure.kept  # the rest of the closure is unaffected


def test_reasons_are_bounded(tmp_path):
    layer = debian_like()
    copies = [f"/usr/bin/env{n}" for n in range(MAX_REASONS * 2)]
    for copy in copies:
        layer.host(copy, "/usr/bin/env")
    closure = closure_of(layer.rootfs(tmp_path), *copies)
    assert closure.kept[P(LIBC)] == tuple(
        Reason(ReasonKind.ELF_NEEDED, source=copy) for copy in copies[:MAX_REASONS]
    )


# ---------------------------------------------------------------- scripts and the entrypoint


@pytest.mark.parametrize("line", ["#!/usr/bin/env bash", "#!/usr/bin/env -S bash -e", "#! /usr/bin/env -i X=1 bash"])
def test_shebang_through_env(tmp_path, line):
    layer = debian_like()
    layer.file("/usr/local/bin/tool", f"{line}\necho hi\n".encode())
    closure = closure_of(layer.rootfs(tmp_path), "/usr/local/bin/tool")
    assert closure.warnings == ()
    script = Reason(ReasonKind.SHEBANG, source="/usr/local/bin/tool")
    assert main_reason(closure, "/usr/bin/env") == script
    assert main_reason(closure, "/usr/bin/bash") == script
    # The interpreter is an ELF: its own libraries follow (the #! and ELF rules reach a fixpoint).
    assert main_reason(closure, f"{IMAGE_LIBS}/libtinfo.so.6") == Reason(ReasonKind.ELF_NEEDED, source="/usr/bin/bash")


def test_script_interpreted_by_a_script(tmp_path):
    layer = debian_like()
    layer.file("/usr/local/bin/wrapper", b"#!/bin/bash\nexec \"$@\"\n")
    layer.file("/usr/local/bin/tool", b"#!/usr/local/bin/wrapper\n")
    closure = closure_of(layer.rootfs(tmp_path), "/usr/local/bin/tool")
    assert main_reason(closure, "/usr/local/bin/wrapper").kind is ReasonKind.SHEBANG
    assert main_reason(closure, "/usr/bin/bash") == Reason(ReasonKind.SHEBANG, source="/usr/local/bin/wrapper")
    assert Reason(ReasonKind.SYMLINK, source="/usr/bin/bash") in closure.kept[P("/bin")]
    assert P(f"{IMAGE_LIBS}/libtinfo.so.6") in closure.kept


def test_missing_interpreter_is_a_warning(tmp_path):
    layer = debian_like()
    layer.file("/usr/local/bin/tool", b"#!/usr/bin/env python3\n")
    closure = closure_of(layer.rootfs(tmp_path), "/usr/local/bin/tool")
    assert closure.warnings == ("python3 (run through /usr/bin/env by /usr/local/bin/tool) not found in the image",)


@pytest.mark.parametrize(
    "config, expected, links",
    [
        ({"Entrypoint": ["ls"], "Cmd": ["-l"]}, "/usr/bin/ls", ()),
        ({"Cmd": ["/bin/ls"]}, "/usr/bin/ls", ("/bin",)),
        ({"Cmd": ["./run"], "WorkingDir": "/opt/app"}, "/opt/app/run", ()),
        ({"Entrypoint": ["run"], "Env": ["PATH=/opt/app"]}, "/opt/app/run", ()),
    ],
)
def test_entrypoint(tmp_path, config, expected, links):
    layer = debian_like()
    layer.file("/opt/app/run", b"\x00not a script\n")
    closure = closure_of(layer.rootfs(tmp_path), facts=facts_with(**config))
    command = (config.get("Entrypoint") or config["Cmd"])[0]
    assert main_reason(closure, expected) == Reason(ReasonKind.ENTRYPOINT, source=command)
    for link in links:
        assert main_reason(closure, link) == Reason(ReasonKind.SYMLINK, source=expected)
    assert closure.warnings == ()


def test_entrypoint_not_found_is_a_warning(tmp_path):
    closure = closure_of(debian_like().rootfs(tmp_path), facts=facts_with(Entrypoint=["nginx"]))
    assert closure.warnings == ("entrypoint nginx not found in the image",)


# ---------------------------------------------------------------- seeds, links and parents


def test_traced_paths_keep_only_what_the_image_has(tmp_path):
    layer = debian_like()
    layer.file("/var/data/a", b"a")
    layer.file("/var/data/b", b"b")
    rootfs = layer.rootfs(tmp_path)
    trace = Trace(
        (
            TracedPath(P("/var/data"), frozenset({Access.LIST}), "/usr/bin/ls", "http GET :80/"),
            TracedPath(P("/run/app.pid"), frozenset({Access.OPEN}), "/usr/bin/prog", "startup"),
            TracedPath(P("/usr/bin/ls"), frozenset({Access.OPEN, Access.EXEC}), "/usr/bin/sh", "startup"),
        ),
        TraceHealth(3, False),
        RunOutcome("batch", 0, False, ()),
    )
    closure = compute_closure(trace, rootfs, facts_with(), NO_ALWAYS)
    assert main_reason(closure, "/var/data") == Reason(ReasonKind.TRACED, "/usr/bin/ls", "list during http GET :80/")
    assert main_reason(closure, "/usr/bin/ls") == Reason(ReasonKind.TRACED, "/usr/bin/sh", "exec|open during startup")
    assert P("/var/data/a") not in closure.kept  # listing a directory keeps the entry, not its contents
    assert P("/run/app.pid") not in closure.kept and P("/run") not in closure.kept


def test_os_release_symlink_survives(tmp_path):
    closure = closure_of(debian_like().rootfs(tmp_path), "/usr/lib/os-release")
    assert main_reason(closure, "/etc/os-release") == Reason(ReasonKind.SYMLINK, source="/usr/lib/os-release")
    assert P("/etc") in closure.kept


def test_symlink_chain_to_a_kept_file(tmp_path):
    layer = debian_like()
    layer.symlink("/etc/alternatives/pager", "/usr/bin/ls")
    layer.symlink("/usr/bin/pager", "/etc/alternatives/pager")
    layer.symlink("/usr/bin/dangling", "/nowhere")
    closure = closure_of(layer.rootfs(tmp_path), "/usr/bin/ls")
    for link in ("/usr/bin/pager", "/etc/alternatives/pager"):
        assert main_reason(closure, link) == Reason(ReasonKind.SYMLINK, source="/usr/bin/ls")
    assert kinds(closure, "/etc/alternatives") == [ReasonKind.PARENT]
    assert P("/usr/bin/dangling") not in closure.kept


def test_parents_carry_their_reasons(tmp_path):
    layer = debian_like()
    layer.directory("/srv/www", mode=0o750)
    layer.file("/srv/www/index.html", b"<html/>", mode=0o644)
    closure = closure_of(layer.rootfs(tmp_path), "/srv/www/index.html")
    above = (Reason(ReasonKind.PARENT, source="/srv/www/index.html"),)
    assert closure.kept[P("/srv/www")] == above
    assert closure.kept[P("/srv")] == above  # named after what is kept for its own sake, not /srv/www
    assert above[0] in closure.kept[P("/")]
    assert all(r.kind is ReasonKind.PARENT for r in closure.kept[P("/")])


def test_always_keep_and_include_paths(tmp_path):
    layer = debian_like()
    layer.file("/opt/data/one", b"1")
    layer.file("/opt/data/sub/two", b"2")
    layer.symlink("/data", "opt/data")
    closure = compute_closure(
        trace_of(), layer.rootfs(tmp_path), facts_with(),
        ClosureOptions(include_paths=(P("/data"), P("/etc/ld.so.conf"), P("/missing"))),
    )
    include = Reason(ReasonKind.INCLUDE)
    for path in ("/opt/data", "/opt/data/one", "/opt/data/sub", "/opt/data/sub/two", "/etc/ld.so.conf"):
        assert main_reason(closure, path) == include
    assert main_reason(closure, "/data") == Reason(ReasonKind.SYMLINK, source="/opt/data")
    assert main_reason(closure, "/etc/passwd") == Reason(ReasonKind.ALWAYS)
    assert main_reason(closure, "/etc/group") == Reason(ReasonKind.ALWAYS)
    assert closure.warnings == ("include path /missing not found in the image",)


def test_included_binary_brings_its_libraries(tmp_path):
    closure = closure_of(debian_like().rootfs(tmp_path), include_paths=(P("/bin/bash"),))
    assert main_reason(closure, "/usr/bin/bash") == Reason(ReasonKind.INCLUDE)
    assert P(f"{IMAGE_LIBS}/libtinfo.so.6") in closure.kept


def test_exclude_wins_over_every_rule(tmp_path):
    layer = debian_like()
    layer.file("/opt/data/one", b"1")
    closure = closure_of(
        layer.rootfs(tmp_path), "/usr/bin/ls", "/usr/lib/os-release",
        include_paths=(P("/opt/data"),), exclude_paths=(P("/opt/data"), P(LIBC), P("/etc/os-release")),
    )
    assert not any(p == P("/opt/data") or P("/opt/data") in p.parents for p in closure.kept)
    assert P(LIBC) not in closure.kept and P("/etc/os-release") not in closure.kept
    assert P("/opt") in closure.kept  # only the excluded path and what is below it go
    assert P(f"{IMAGE_LIBS}/libselinux.so.1") in closure.kept


def test_volume_seed_data_is_kept_whole(tmp_path):
    layer = debian_like()
    layer.file("/var/lib/app/seed.db", b"seed")
    layer.file("/var/lib/app/conf/app.ini", b"[app]")
    layer.file("/var/lib/other/x", b"x")
    facts = facts_with(Volumes={"/var/lib/app": {}, "/not/shipped": {}})
    closure = closure_of(layer.rootfs(tmp_path), facts=facts)
    seed = Reason(ReasonKind.VOLUME, source="/var/lib/app")
    for path in ("/var/lib/app", "/var/lib/app/seed.db", "/var/lib/app/conf", "/var/lib/app/conf/app.ini"):
        assert main_reason(closure, path) == seed
    assert P("/var/lib/other/x") not in closure.kept
    assert closure.warnings == ()


def test_hard_links_are_kept(tmp_path):
    layer = debian_like()
    layer.host("/usr/bin/gzip", "/usr/bin/env")
    layer.hardlink("/usr/bin/gunzip", "/usr/bin/gzip")
    layer.hardlink("/usr/sbin/zcat", "/usr/bin/gzip")
    rootfs = layer.rootfs(tmp_path)
    assert rootfs.get(P("/usr/bin/gzip")).hardlink_group  # the index saw the links
    closure = closure_of(rootfs, "/usr/bin/gunzip")
    for other in ("/usr/bin/gzip", "/usr/sbin/zcat"):
        assert main_reason(closure, other) == Reason(ReasonKind.HARDLINK, source="/usr/bin/gunzip")
    assert kinds(closure, "/usr/sbin") == [ReasonKind.PARENT]


def test_kept_paths_are_sorted_and_exist_in_the_image(tmp_path):
    rootfs = debian_like().rootfs(tmp_path)
    closure = closure_of(rootfs, "/usr/bin/ls", "/usr/lib/os-release")
    assert list(closure.kept) == sorted(closure.kept)
    assert all(rootfs.get(p) is not None for p in closure.kept)


# ---------------------------------------------------------------- against ldd in the real images


LDD_SCRIPT = 'for p in $(ldd "$1" | grep -o "/[^ ]*"); do readlink -f "$p"; done'
MAIN_BINARIES = {"nginx": "/usr/sbin/nginx", "jq": "/usr/bin/jq", "pyapp": "/usr/bin/python3.11"}


@pytest.mark.engine
@pytest.mark.parametrize("name", sorted(MAIN_BINARIES))
def test_elf_closure_matches_ldd_in_the_container(name, fixture_image, docker_client, tmp_path):
    from slim.adapters.engine import DockerEngine  # the one module allowed to import docker

    binary = MAIN_BINARIES[name]
    tag = fixture_image(name)
    output = docker_client.containers.run(
        tag, entrypoint=["/bin/sh", "-c", LDD_SCRIPT, "ldd", binary], remove=True, user="0"
    )
    ldd = {P(line) for line in output.decode().split()}
    engine = DockerEngine(docker_client)
    facts = engine.inspect_image(tag)
    rootfs = RootFS.from_layers(spool_image(engine, facts.id, tmp_path))
    # The binary alone: no entrypoint, volumes or always-kept files, only the image's Env.
    alone = dataclasses.replace(facts, config={"Env": facts.config.get("Env") or []})
    started = time.perf_counter()
    closure = compute_closure(trace_of(binary, access=Access.EXEC), rootfs, alone, NO_ALWAYS)
    seconds = time.perf_counter() - started
    files = {p for p in closure.kept if rootfs.get(p).kind is EntryKind.FILE} - {P(binary)}
    assert closure.warnings == ()
    assert files == ldd
    print(f"{name}: {len(ldd)} libraries, closure of {binary} in {seconds:.3f}s")
