"""compute_closure on small images made here from real host ELF files, plus one comparison with `ldd`
run inside the fixture images; and each keep rule of slim/rules/ on a hand-built image."""
import dataclasses
import subprocess
import time
from pathlib import Path

import pytest

from slim.build.assemble import plan_image
from slim.build.closure import MAX_REASONS, ClosureOptions, compute_closure, sightings_that_count
from slim.model import (
    Access,
    Closure,
    EntryKind,
    ImageFacts,
    Lookup,
    Reason,
    ReasonKind,
    RunOutcome,
    Seen,
    Trace,
    TracedPath,
    TraceHealth,
)
from slim.image.rootfs import RootFS, spool_image
from slim.rules.app_files import step_kind, StepKind
from slim.rules.glibc import locale_candidates, nss_services
from slim.rules.table import RULE_NAMES, RULES
from tests.helpers import (
    IMAGE_LIBS,
    LIBC,
    LOADER,
    NO_ALWAYS,
    P,
    TINY_APP_C,
    Layer,
    build_tiny_app,
    build_tiny_lib,
    closure_of,
    debian_like,
    facts_with,
    fake_elf32,
    gcc,
    trace_of,
)

# The loader's rules alone (no keep rule, no package database or licenses).
NO_RULES = ClosureOptions(always_keep=(), disabled_rules=frozenset(RULE_NAMES), package_db=False)


def stacked(tmp_path: Path, *layers: Layer) -> RootFS:
    """An image of several layers, the first at the bottom."""
    return RootFS.from_layers([layer.tar(tmp_path) for layer in layers])


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
        ClosureOptions(include_paths=(P("/data"), P("/usr/lib/os-release"), P("/missing"))),
    )
    include = Reason(ReasonKind.INCLUDE)
    for path in ("/opt/data", "/opt/data/one", "/opt/data/sub", "/opt/data/sub/two", "/usr/lib/os-release"):
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
    from slim.adapters.docker_engine import DockerEngine  # the one module allowed to import docker

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
    closure = compute_closure(trace_of(binary, access=Access.EXEC), rootfs, alone, NO_RULES)
    seconds = time.perf_counter() - started
    files = {p for p in closure.kept if rootfs.get(p).kind is EntryKind.FILE} - {P(binary)}
    assert closure.warnings == ()
    assert files == ldd
    print(f"{name}: {len(ldd)} libraries, closure of {binary} in {seconds:.3f}s")


# ---------------------------------------------------------------- keep rules (slim/rules/, issue 6)


def rule_closure(rootfs: RootFS, *paths: str, facts: ImageFacts | None = None, exec_paths: tuple[str, ...] = (),
                 **options) -> Closure:
    """The closure of a run that opened `paths` and executed `exec_paths`, with every rule on."""
    traced = trace_of(*paths).paths + trace_of(*exec_paths, access=Access.EXEC).paths
    trace = Trace(traced, TraceHealth(len(traced), False), RunOutcome("server", None, True, ()))
    return compute_closure(trace, rootfs, facts or facts_with(), ClosureOptions(always_keep=(), **options))


def kept_for(closure: Closure, kind: ReasonKind) -> set[str]:
    """Paths kept (among other reasons) for `kind`: a file a rule keeps may have been kept first for another
    reason (the symlink on the way to it, the source of a traced .pyc)."""
    return {str(path) for path, reasons in closure.kept.items() if kind in (r.kind for r in reasons)}


def test_every_reason_kind_has_words():
    for kind in ReasonKind:
        assert Reason(kind, source="x").describe().endswith("x")


def test_rule_names_are_unique_and_each_has_its_own_reason():
    assert len(set(RULE_NAMES)) == len(RULES) == len({rule.kind for rule in RULES})


@pytest.mark.parametrize(
    "created_by, kind",
    [
        ("", StepKind.BASE),  # docker import
        ("/bin/sh -c #(nop) ADD file:2f1b82fa0ae9 in / ", StepKind.BASE),
        ("ADD rootfs.tar.xz / # buildkit", StepKind.BASE),
        ("/bin/sh -c #(nop) COPY dir:98222fbd1cab in /app/ ", StepKind.COPY),
        ("/bin/sh -c #(nop) COPY file:4e480c2308e4 in /data/input.json ", StepKind.COPY),
        ("COPY --chown=app:app --from=build /out /srv/app # buildkit", StepKind.COPY),
        ("COPY docker-entrypoint.sh / # buildkit", StepKind.COPY),
        ("|1 DEBIAN_FRONTEND=noninteractive /bin/sh -c apt-get update && apt-get install -y nginx", StepKind.OS_PACKAGES),
        ("RUN /bin/sh -c apk add --no-cache curl # buildkit", StepKind.OS_PACKAGES),
        ("/bin/sh -c pip install -r requirements.txt && rm -rf /var/lib/apt/lists/x", StepKind.RUN),
        ("RUN /bin/sh -c npm ci && npm run build # buildkit", StepKind.RUN),
        ("/bin/sh -c #(nop) WORKDIR /app", StepKind.OTHER),
        ("ENV NODE_ENV=production", StepKind.OTHER),
    ],
)
def test_step_kinds(created_by, kind):
    assert step_kind(created_by) is kind


def app_image(tmp_path: Path) -> RootFS:
    """base / apt-get layer / COPY of the app / a build step under WORKDIR / a RUN step elsewhere."""
    base = debian_like()
    apt = Layer()
    apt.file("/usr/share/tool/data.txt", b"os package")
    apt.file("/app/from-apt.txt", b"a package manager wrote this under WORKDIR")
    copy = Layer()
    copy.file("/app/app.py", b"import lazy\n", mode=0o644)
    copy.file("/app/lazy.py", b"X = 1\n", mode=0o644)
    copy.file("/app/templates/hello.html", b"<p>hi</p>", mode=0o644)
    copy.directory("/app/uploads")
    copy.file("/app/.git/HEAD", b"ref: refs/heads/main\n", mode=0o644)
    copy.file("/app/node_modules/left-pad/index.js", b"module.exports = 1;\n", mode=0o644)
    copy.file("/etc/app.conf", b"port=8000\n", mode=0o644)
    copy.file("/opt/svc/run.sh", b"#!/bin/bash\nexec true\n")
    build = Layer()
    build.file("/app/dist/bundle.js", b"built", mode=0o644)
    build.file("/opt/svc/helper.sh", b"#!/bin/bash\n")
    other = Layer()
    other.file("/opt/tool/bin/tool", b"\x00downloaded by curl")
    return stacked(tmp_path, base, apt, copy, build, other)


APP_STEPS = (
    "", "/bin/sh -c apt-get install -y tool", "/bin/sh -c #(nop) COPY dir:abc in / ",
    "/bin/sh -c npm run build", "/bin/sh -c curl -o /opt/tool/bin/tool https://example.org/tool",
)


def test_app_files_are_what_the_app_layers_added(tmp_path):
    facts = facts_with(WorkingDir="/app", Cmd=["/opt/svc/run.sh"])
    closure = rule_closure(app_image(tmp_path), "/app/app.py", facts=facts, layer_steps=APP_STEPS)
    app = kept_for(closure, ReasonKind.APP_FILE)
    assert app == {
        "/app/app.py", "/app/lazy.py", "/app/templates/hello.html", "/app/uploads", "/etc/app.conf",
        "/app/dist/bundle.js", "/opt/svc/run.sh", "/opt/svc/helper.sh",  # next to the entrypoint script
    }
    assert main_reason(closure, "/app/lazy.py") == Reason(
        ReasonKind.APP_FILE, source="layer 2 (COPY dir:abc in /)", detail="under WORKDIR /app"
    )
    assert main_reason(closure, "/etc/app.conf").detail == "copied into the image"
    for never in ("/app/from-apt.txt", "/usr/share/tool/data.txt", "/app/.git/HEAD", "/opt/tool/bin/tool",
                  "/app/node_modules/left-pad/index.js"):
        assert P(never) not in closure.kept, never


def test_app_files_touched_keeps_only_those_in_directories_the_run_used(tmp_path):
    facts = facts_with(WorkingDir="/app")
    closure = rule_closure(app_image(tmp_path), "/app/app.py", facts=facts, layer_steps=APP_STEPS, app_files="touched")
    assert kept_for(closure, ReasonKind.APP_FILE) == {"/app/app.py", "/app/lazy.py", "/app/uploads"}
    none = rule_closure(app_image(tmp_path), "/app/app.py", facts=facts, layer_steps=APP_STEPS, app_files="none")
    assert kept_for(none, ReasonKind.APP_FILE) == set()


def test_app_files_without_history_trust_only_workdir(tmp_path):
    closure = rule_closure(app_image(tmp_path), facts=facts_with(WorkingDir="/app"))
    assert P("/app/lazy.py") in closure.kept and P("/etc/app.conf") not in closure.kept
    assert P("/usr/share/tool/data.txt") not in closure.kept  # never the first layer


def test_interpreted_entrypoints_name_the_app_directory(tmp_path):
    layer = debian_like()
    layer.host("/usr/bin/python3.11", "/usr/bin/env")  # any executable will do: only its name matters
    app = Layer()
    app.file("/srv/shop/main.py", b"import views\n", mode=0o644)
    app.file("/srv/shop/views.py", b"", mode=0o644)
    facts = facts_with(Cmd=["python3.11", "-u", "/srv/shop/main.py"])
    closure = rule_closure(stacked(tmp_path, layer, app), facts=facts, layer_steps=("", "RUN /bin/sh -c x # buildkit"))
    assert main_reason(closure, "/srv/shop/views.py").detail == "next to the entrypoint /srv/shop/main.py"


def site_packages() -> Layer:
    layer = debian_like()
    site = "/usr/lib/python3/dist-packages"
    for path in ("flask/__init__.py", "flask/app.py", "flask/json/provider.py", "flask/templates/x.html",
                 "flask/__pycache__/app.cpython-311.pyc", "flask/tests/test_app.py", "flask/docs/index.rst"):
        layer.file(f"{site}/{path}", b"# code\n", mode=0o644)
    layer.file(f"{site}/Flask-2.2.2.egg-info/top_level.txt", b"flask\n", mode=0o644)
    layer.file(f"{site}/Flask-2.2.2.egg-info/PKG-INFO", b"Name: Flask\n", mode=0o644)
    # a wheel with two top-level names, one of them a module with its extension
    layer.file(f"{site}/yaml/__init__.py", b"", mode=0o644)
    layer.file(f"{site}/yaml/loader.py", b"", mode=0o644)
    layer.file(f"{site}/_yaml.cpython-311-x86_64-linux-gnu.so", b"\x00", mode=0o644)
    layer.file(f"{site}/PyYAML-6.0.dist-info/RECORD",
               b"yaml/__init__.py,sha256=x,1\nyaml/loader.py,,\n_yaml.cpython-311-x86_64-linux-gnu.so,,\n"
               b"PyYAML-6.0.dist-info/RECORD,,\n../../../bin/yamlx,,\n", mode=0o644)
    layer.file(f"{site}/six.py", b"", mode=0o644)
    layer.file(f"{site}/__pycache__/six.cpython-311.pyc", b"", mode=0o644)
    layer.file(f"{site}/google/protobuf/__init__.py", b"", mode=0o644)
    layer.file(f"{site}/google/protobuf/message.py", b"", mode=0o644)
    layer.file(f"{site}/google/cloud/storage/__init__.py", b"", mode=0o644)
    layer.file(f"{site}/unused/__init__.py", b"", mode=0o644)
    return layer


def test_python_packages_are_kept_whole_once_used(tmp_path):
    site = "/usr/lib/python3/dist-packages"
    closure = rule_closure(
        site_packages().rootfs(tmp_path), f"{site}/flask/__init__.py", f"{site}/_yaml.cpython-311-x86_64-linux-gnu.so",
        f"{site}/__pycache__/six.cpython-311.pyc", f"{site}/google/protobuf/message.py",
    )
    package = kept_for(closure, ReasonKind.PACKAGE)
    expected = {
        "flask/app.py", "flask/json/provider.py", "flask/templates/x.html", "flask/__pycache__/app.cpython-311.pyc",
        "Flask-2.2.2.egg-info/top_level.txt", "Flask-2.2.2.egg-info/PKG-INFO",
        "yaml/__init__.py", "yaml/loader.py", "PyYAML-6.0.dist-info/RECORD", "six.py",
        "google/protobuf/__init__.py",
    }
    assert {f"{site}/{p}" for p in expected} <= package
    assert main_reason(closure, f"{site}/flask/app.py") == Reason(
        ReasonKind.PACKAGE, source=f"{site}/Flask-2.2.2.egg-info", detail=f"used: {site}/flask/__init__.py"
    )
    for never in ("flask/tests/test_app.py", "flask/docs/index.rst", "google/cloud/storage/__init__.py",
                  "unused/__init__.py"):
        assert P(f"{site}/{never}") not in closure.kept, never


def node_tree() -> Layer:
    layer = debian_like()
    modules = "/app/node_modules"
    for path in ("express/package.json", "express/index.js", "express/lib/router/index.js", "express/README.md",
                 "express/History.md", "express/test/app.js", "express/LICENSE",
                 "express/node_modules/debug/index.js", "@scope/pkg/index.js", "@scope/other/index.js"):
        layer.file(f"{modules}/{path}", b"//\n", mode=0o644)
    layer.file("/usr/share/nodejs/qs/package.json", b"{}", mode=0o644)
    layer.file("/usr/share/nodejs/qs/lib/parse.js", b"//", mode=0o644)
    layer.file("/usr/share/nodejs/qs/lib/stringify.js", b"//", mode=0o644)
    return layer


def test_node_packages_are_kept_whole_once_used(tmp_path):
    closure = rule_closure(
        node_tree().rootfs(tmp_path), "/app/node_modules/express/index.js", "/app/node_modules/@scope/pkg/index.js",
        "/usr/share/nodejs/qs/lib/parse.js",
    )
    package = kept_for(closure, ReasonKind.PACKAGE)
    assert {"/app/node_modules/express/lib/router/index.js", "/app/node_modules/express/package.json",
            "/app/node_modules/express/LICENSE", "/usr/share/nodejs/qs/lib/stringify.js"} <= package
    for never in ("express/README.md", "express/History.md", "express/test/app.js",
                  "express/node_modules/debug/index.js", "@scope/other/index.js"):
        assert P(f"/app/node_modules/{never}") not in closure.kept, never


def test_ruby_gems_and_vendor_ruby_libraries_are_kept_whole_once_used(tmp_path):
    layer = debian_like()
    gems = "/var/lib/gems/3.1.0"
    layer.file(f"{gems}/specifications/rack-2.2.4.gemspec", b"#", mode=0o644)
    layer.file(f"{gems}/gems/rack-2.2.4/lib/rack.rb", b"#", mode=0o644)
    layer.file(f"{gems}/gems/rack-2.2.4/lib/rack/lint.rb", b"#", mode=0o644)
    layer.file(f"{gems}/gems/rack-2.2.4/test/spec_lint.rb", b"#", mode=0o644)
    layer.file(f"{gems}/gems/thin-1.8/lib/thin.rb", b"#", mode=0o644)
    layer.file("/usr/lib/ruby/vendor_ruby/sinatra.rb", b"#", mode=0o644)
    layer.file("/usr/lib/ruby/vendor_ruby/sinatra/base.rb", b"#", mode=0o644)
    layer.file("/usr/lib/ruby/vendor_ruby/mustermann.rb", b"#", mode=0o644)
    closure = rule_closure(layer.rootfs(tmp_path), f"{gems}/gems/rack-2.2.4/lib/rack.rb",
                           "/usr/lib/ruby/vendor_ruby/sinatra.rb")
    package = kept_for(closure, ReasonKind.PACKAGE)
    assert {f"{gems}/gems/rack-2.2.4/lib/rack/lint.rb", f"{gems}/specifications/rack-2.2.4.gemspec",
            "/usr/lib/ruby/vendor_ruby/sinatra/base.rb"} <= package
    for never in (f"{gems}/gems/rack-2.2.4/test/spec_lint.rb", f"{gems}/gems/thin-1.8/lib/thin.rb",
                  "/usr/lib/ruby/vendor_ruby/mustermann.rb"):
        assert P(never) not in closure.kept, never


def python_runtime() -> Layer:
    layer = debian_like()
    layer.file("/usr/bin/python3.11", b"\x00python", mode=0o755)
    layer.symlink("/usr/bin/python3", "python3.11")
    stdlib = "/usr/lib/python3.11"
    for path in ("json/__init__.py", "zoneinfo/_tzpath.py", "__pycache__/os.cpython-311.pyc",
                 "json/__pycache__/__init__.cpython-311.pyc", "lib-dynload/_zoneinfo.cpython-311-x86_64-linux-gnu.so",
                 "lib-dynload/_testcapi.cpython-311-x86_64-linux-gnu.so", "encodings/utf_8.py", "encodings/cp1252.py",
                 "lib-dynload/readline.cpython-311-x86_64-linux-gnu.so", "test/test_os.py", "idlelib/idle.py",
                 "tkinter/__init__.py", "ensurepip/__init__.py", "lib2to3/tests/data/x.py", "turtle.py",
                 "config-3.11-x86_64-linux-gnu/Makefile", "site-packages/README.txt"):
        layer.file(f"{stdlib}/{path}", b"#! /usr/local/bin/python\n", mode=0o755 if path.endswith(".so") else 0o644)
    layer.file(f"{stdlib}/cgi.py", b"#! /usr/local/bin/python\n", mode=0o755)  # executable, its #! is dead
    # os.py imports json at the top and zoneinfo only where it is available; encodings finds codecs by name.
    layer.file(f"{stdlib}/os.py", b"import json\ntry:\n    from zoneinfo import _tzpath\nexcept ImportError:\n    pass\n",
               mode=0o644)
    layer.file(f"{stdlib}/encodings/__init__.py", b"def search(name):\n    return __import__('encodings.' + name)\n",
               mode=0o644)
    layer.file(f"{stdlib}/encodings/aliases.py", b"aliases = {'latin1': 'latin_1', 'utf8': 'utf_8'}\n", mode=0o644)
    layer.file("/app/app.py", b"def export():\n    import importlib\n    return importlib.import_module('cgi')\n",
               mode=0o644)
    return layer


def test_python_keeps_what_kept_modules_import_and_the_runtime_only_what_no_import_graph_sees(tmp_path):
    stdlib = "/usr/lib/python3.11"
    closure = rule_closure(python_runtime().rootfs(tmp_path), f"{stdlib}/__pycache__/os.cpython-311.pyc",
                           f"{stdlib}/encodings/__init__.py", "/app/app.py", exec_paths=("/usr/bin/python3.11",),
                           facts=facts_with(Cmd=["python3", "/app/app.py"]))
    assert kept_for(closure, ReasonKind.RUNTIME) >= {f"{stdlib}/os.py", f"{stdlib}/encodings/aliases.py"}
    assert main_reason(closure, f"{stdlib}/json/__init__.py") == Reason(ReasonKind.IMPORT, f"{stdlib}/os.py", "1")
    assert main_reason(closure, f"{stdlib}/json/__init__.py").describe() == f"imported by {stdlib}/os.py:1"
    assert main_reason(closure, f"{stdlib}/zoneinfo/_tzpath.py") == Reason(ReasonKind.IMPORT, f"{stdlib}/os.py", "3")
    assert main_reason(closure, f"{stdlib}/cgi.py") == Reason(ReasonKind.IMPORT, "/app/app.py", "3")
    assert P(f"{stdlib}/encodings/utf_8.py") in closure.kept  # a codec always looked up, not every codec
    for never in ("lib-dynload/_testcapi.cpython-311-x86_64-linux-gnu.so", "encodings/cp1252.py",
                  "lib-dynload/_zoneinfo.cpython-311-x86_64-linux-gnu.so",  # nothing imports it
                  "lib-dynload/readline.cpython-311-x86_64-linux-gnu.so", "test/test_os.py", "idlelib/idle.py",
                  "tkinter/__init__.py", "ensurepip/__init__.py", "lib2to3/tests/data/x.py", "turtle.py",
                  "config-3.11-x86_64-linux-gnu/Makefile", "site-packages/README.txt",
                  # only the bytecode of modules the run imported: the others compile on first import
                  "json/__pycache__/__init__.cpython-311.pyc"):
        assert P(f"{stdlib}/{never}") not in closure.kept, never
    assert closure.warnings == ()  # no "interpreter /usr/local/bin/python of cgi.py not found"


def test_runtimes_of_node_java_and_ruby(tmp_path):
    layer = debian_like()
    layer.file("/usr/lib/x86_64-linux-gnu/libnode.so.108", b"\x00...require('/usr/share/nodejs/undici/index.js')")
    layer.file("/usr/share/nodejs/undici/index.js", b"//", mode=0o644)
    layer.file("/usr/share/nodejs/undici/lib/fetch.js", b"//", mode=0o644)
    layer.file("/usr/share/nodejs/unrelated/index.js", b"//", mode=0o644)
    jdk = "/usr/lib/jvm/java-17-openjdk-amd64"
    for path in ("lib/server/libjvm.so", "lib/modules", "lib/libnet.so", "lib/src.zip", "lib/ct.sym",
                 "conf/security/java.security", "release", "bin/javac"):
        layer.file(f"{jdk}/{path}", b"\x00")
    # The VM names "set" (a feature its C code requires); nothing requires etc.
    layer.file("/usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1", b"\x00set\x00")
    layer.file("/usr/lib/ruby/3.1.0/set.rb", b"#", mode=0o644)
    layer.file("/usr/lib/x86_64-linux-gnu/ruby/3.1.0/etc.so", b"\x00")
    layer.file("/usr/lib/x86_64-linux-gnu/ruby/3.1.0/enc/euc_jp.so", b"\x00")
    layer.file("/usr/lib/ruby/2.7.0/old.rb", b"#", mode=0o644)
    closure = rule_closure(layer.rootfs(tmp_path), "/usr/lib/x86_64-linux-gnu/libnode.so.108",
                           f"{jdk}/lib/server/libjvm.so", "/usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1")
    runtime = kept_for(closure, ReasonKind.RUNTIME)
    assert {"/usr/share/nodejs/undici/lib/fetch.js", f"{jdk}/lib/modules", f"{jdk}/lib/libnet.so",
            f"{jdk}/conf/security/java.security", f"{jdk}/release",
            "/usr/lib/x86_64-linux-gnu/ruby/3.1.0/enc/euc_jp.so"} <= runtime
    assert "/usr/lib/ruby/3.1.0/set.rb" in kept_for(closure, ReasonKind.IMPORT)  # Ruby's require graph
    for never in ("/usr/share/nodejs/unrelated/index.js", f"{jdk}/lib/src.zip", f"{jdk}/lib/ct.sym",
                  f"{jdk}/bin/javac", "/usr/lib/ruby/2.7.0/old.rb", "/usr/lib/x86_64-linux-gnu/ruby/3.1.0/etc.so"):
        assert P(never) not in closure.kept, never


def test_ruby_code_is_followed_once_a_later_round_keeps_the_ruby_vm(tmp_path):
    # The entrypoint script runs `ruby`, a VM whose name carries no version: the script-commands rule keeps it
    # in the first round, after the require graph looked for a kept VM and found none; the libruby it needs
    # is kept in the next round, and the require graph must then follow the app's requires.
    lib = gcc(tmp_path / "lib" / "libruby-3.1.so.3.1", "int tiny(void) { return 42; }\n", "-shared", "-fPIC",
              "-Wl,-soname,libruby-3.1.so.3.1")
    vm = gcc(tmp_path / "ruby", TINY_APP_C, f"-L{lib.parent}", "-l:libruby-3.1.so.3.1")
    layer = debian_like()
    layer.file("/usr/bin/ruby", vm.read_bytes())
    layer.file(f"{IMAGE_LIBS}/libruby-3.1.so.3.1", lib.read_bytes())
    layer.file("/usr/lib/ruby/3.1.0/set.rb", b"#", mode=0o644)
    layer.file("/app/start.sh", b"#!/bin/sh\nexec ruby /app/server.rb\n")
    layer.file("/app/server.rb", b"require 'set'\n", mode=0o644)
    closure = rule_closure(layer.rootfs(tmp_path), "/app/start.sh", "/app/server.rb",
                           facts=facts_with(Entrypoint=["/app/start.sh"]))
    assert P(f"{IMAGE_LIBS}/libruby-3.1.so.3.1") in closure.kept
    assert main_reason(closure, "/usr/lib/ruby/3.1.0/set.rb") == Reason(ReasonKind.IMPORT, "/app/server.rb", "1")


def zoneinfo() -> Layer:
    layer = debian_like()
    for zone in ("Etc/UTC", "Europe/Paris", "right/Europe/Paris", "tzdata.zi", "zone1970.tab"):
        layer.file(f"/usr/share/zoneinfo/{zone}", b"TZif2", mode=0o644)
    layer.symlink("/usr/share/zoneinfo/posix/Europe", "../Europe")
    layer.symlink("/etc/localtime", "/usr/share/zoneinfo/Etc/UTC")
    return layer


def test_timezone_database_once_localtime_is_read(tmp_path):
    closure = rule_closure(zoneinfo().rootfs(tmp_path), "/usr/share/zoneinfo/Etc/UTC")  # what /etc/localtime led to
    assert {"/usr/share/zoneinfo/Europe/Paris", "/usr/share/zoneinfo/posix/Europe"} <= kept_for(
        closure, ReasonKind.TIMEZONE
    )
    for never in ("right/Europe/Paris", "tzdata.zi", "zone1970.tab"):
        assert P(f"/usr/share/zoneinfo/{never}") not in closure.kept
    untouched = rule_closure(zoneinfo().rootfs(tmp_path), "/usr/bin/ls")
    assert kept_for(untouched, ReasonKind.TIMEZONE) == set()


def ca_image() -> Layer:
    layer = debian_like()
    layer.file("/usr/lib/x86_64-linux-gnu/libssl.so.3", b"\x00")
    layer.file("/etc/ssl/certs/ca-certificates.crt", b"-----BEGIN CERTIFICATE-----", mode=0o644)
    layer.file("/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt", b"-----BEGIN", mode=0o644)
    layer.file("/usr/share/ca-certificates/mozilla/Unlinked.crt", b"-----BEGIN", mode=0o644)
    layer.symlink("/etc/ssl/certs/ISRG_Root_X1.pem", "/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt")
    layer.symlink("/etc/ssl/certs/4042bcee.0", "ISRG_Root_X1.pem")
    layer.file("/etc/ssl/openssl.cnf", b"#", mode=0o644)
    layer.file("/usr/lib/ssl/misc/CA.pl", b"#!/usr/bin/perl\n")
    return layer


def test_ca_certificates_once_a_tls_library_is_kept(tmp_path):
    closure = rule_closure(ca_image().rootfs(tmp_path), "/usr/lib/x86_64-linux-gnu/libssl.so.3")
    ca = kept_for(closure, ReasonKind.CA_CERTIFICATES)
    assert {"/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/4042bcee.0", "/etc/ssl/certs/ISRG_Root_X1.pem",
            "/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt", "/etc/ssl/openssl.cnf"} <= ca
    assert P("/usr/share/ca-certificates/mozilla/Unlinked.crt") not in closure.kept
    assert P("/usr/lib/ssl/misc/CA.pl") not in closure.kept
    assert kept_for(rule_closure(ca_image().rootfs(tmp_path), "/usr/bin/ls"), ReasonKind.CA_CERTIFICATES) == set()


NSSWITCH_CONF = b"passwd: files\nhosts: files [NOTFOUND=return] mdns4_minimal dns # comment\nnetgroup: nis\n"


def test_nss_services_are_read_like_libc_does():
    assert nss_services(NSSWITCH_CONF.decode()) == {"files", "mdns4_minimal", "dns", "nis"}


def test_nss_modules_once_name_resolution_is_used(tmp_path):
    layer = debian_like()  # its libc is the host's glibc 2.36: files and dns are built in
    layer.file("/etc/nsswitch.conf", NSSWITCH_CONF, mode=0o644)
    layer.file("/etc/gai.conf", b"#", mode=0o644)
    for service in ("files", "dns", "mdns4_minimal", "compat"):
        layer.file(f"{IMAGE_LIBS}/libnss_{service}.so.2", b"\x00")
    closure = rule_closure(layer.rootfs(tmp_path), "/etc/nsswitch.conf", exec_paths=("/usr/bin/ls",))
    assert kept_for(closure, ReasonKind.NSS) == {
        "/etc/nsswitch.conf", "/etc/gai.conf", f"{IMAGE_LIBS}/libnss_mdns4_minimal.so.2"
    }
    assert main_reason(closure, "/etc/nsswitch.conf").kind is ReasonKind.TRACED
    # glibc's resolver is part of libc.so.6 (2.34+): any program keeping libc can resolve names
    libc = rule_closure(layer.rootfs(tmp_path), exec_paths=("/usr/bin/ls",))
    assert P(f"{IMAGE_LIBS}/libnss_mdns4_minimal.so.2") in libc.kept


def test_nss_modules_of_an_older_glibc(tmp_path):
    layer = Layer()
    layer.file("/etc/nsswitch.conf", NSSWITCH_CONF, mode=0o644)
    layer.file("/etc/ld.so.conf", b"/lib/x86_64-linux-gnu\n", mode=0o644)
    layer.file("/lib/x86_64-linux-gnu/libc-2.31.so", b"\x00GLIBC_2.30\x00")
    for service in ("files", "dns"):
        layer.file(f"/lib/x86_64-linux-gnu/libnss_{service}.so.2", b"\x00")
    closure = rule_closure(layer.rootfs(tmp_path), "/lib/x86_64-linux-gnu/libc-2.31.so")
    assert {"/lib/x86_64-linux-gnu/libnss_files.so.2", "/lib/x86_64-linux-gnu/libnss_dns.so.2"} <= kept_for(
        closure, ReasonKind.NSS
    )


def test_gconv_modules_once_iconv_loads_one(tmp_path):
    layer = debian_like()
    gconv = f"{IMAGE_LIBS}/gconv"
    for name in ("gconv-modules.cache", "gconv-modules", "ISO8859-1.so", "UTF-16.so"):
        layer.file(f"{gconv}/{name}", b"\x00")
    cache_only = rule_closure(layer.rootfs(tmp_path), f"{gconv}/gconv-modules.cache")
    assert kept_for(cache_only, ReasonKind.GCONV) == set()
    used = rule_closure(layer.rootfs(tmp_path), f"{gconv}/gconv-modules.cache", f"{gconv}/ISO8859-1.so")
    assert {f"{gconv}/UTF-16.so", f"{gconv}/gconv-modules"} <= kept_for(used, ReasonKind.GCONV)


@pytest.mark.parametrize(
    "name, candidates",
    [
        ("en_US.UTF-8", ["en_US.UTF-8", "en_US.utf8", "en_US", "en.UTF-8", "en.utf8", "en"]),
        ("de_DE.ISO-8859-1@euro", ["de_DE.ISO-8859-1@euro", "de_DE.ISO-8859-1", "de.ISO-8859-1@euro"]),
        ("C.UTF-8", ["C.UTF-8", "C.utf8", "C"]),
    ],
)
def test_locale_names_are_normalised_like_glibc(name, candidates):
    found = locale_candidates(name)
    assert found[: len(candidates)] == candidates or set(candidates) <= set(found)


def test_the_locale_the_image_sets(tmp_path):
    layer = debian_like()
    for locale in ("en_US.utf8", "fr_FR.utf8"):
        layer.file(f"/usr/lib/locale/{locale}/LC_CTYPE", b"\x00", mode=0o644)
    layer.file("/usr/share/locale/locale.alias", b"#", mode=0o644)
    closure = rule_closure(layer.rootfs(tmp_path), facts=facts_with(Env=["LANG=en_US.UTF-8", "LC_ALL="]))
    assert kept_for(closure, ReasonKind.LOCALE) == {
        "/usr/lib/locale/en_US.utf8", "/usr/lib/locale/en_US.utf8/LC_CTYPE", "/usr/share/locale/locale.alias"
    }
    assert kept_for(rule_closure(layer.rootfs(tmp_path)), ReasonKind.LOCALE) == set()


def test_empty_subdirectories_of_a_used_directory(tmp_path):
    layer = debian_like()
    for directory in ("/srv/db/pg_tblspc", "/srv/db/pg_wal/archive_status", "/srv/db/deep/a/b", "/srv/other/x"):
        layer.directory(directory)
    layer.file("/srv/db/pg_wal/000001", b"wal", mode=0o600)
    closure = rule_closure(layer.rootfs(tmp_path), "/srv/db")
    assert kept_for(closure, ReasonKind.EMPTY_DIRECTORY) == {
        "/srv/db/pg_tblspc", "/srv/db/pg_wal/archive_status", "/srv/db/deep", "/srv/db/deep/a", "/srv/db/deep/a/b"
    }
    assert P("/srv/db/pg_wal/000001") not in closure.kept and P("/srv/other/x") not in closure.kept


def database_image(executable: bool = False) -> Layer:
    layer = debian_like()
    for directory in ("/srv/pg", "/srv/pg/data", "/srv/pg/data/global", "/srv/pg/data/base", "/srv/pg/data/base/5",
                      "/srv/pg/data/pg_wal", "/srv/pg/.cache"):
        layer.directory(directory, mode=0o700, uid=999)
    for path in ("data/PG_VERSION", "data/global/pg_control", "data/base/5/1249", "data/base/5/2684",
                 "data/pg_wal/000000010000000000000001", ".cache/junk"):
        layer.file(f"/srv/pg/{path}", b"page", mode=0o600, uid=999)
    layer.directory("/srv/pg/data/pg_tblspc", mode=0o700, uid=999)
    if executable:
        layer.file("/srv/pg/bin/tool", b"\x00", mode=0o755, uid=999)
    layer.file("/srv/root-owned/data.db", b"x", mode=0o644)
    return layer


def test_a_non_root_data_tree_the_run_touched_is_kept_whole(tmp_path):
    closure = rule_closure(database_image().rootfs(tmp_path), "/srv/pg/data/global/pg_control", "/srv/root-owned/data.db")
    assert {"/srv/pg", "/srv/pg/data/base/5/2684", "/srv/pg/data/pg_wal/000000010000000000000001",
            "/srv/pg/data/pg_tblspc"} <= kept_for(closure, ReasonKind.DATA_TREE)
    assert main_reason(closure, "/srv/pg/data/base/5/1249") == Reason(
        ReasonKind.DATA_TREE, source="/srv/pg", detail="owned by 999"
    )
    assert P("/srv/pg/.cache/junk") not in closure.kept  # tool caches are no data
    code = rule_closure(database_image(executable=True).rootfs(tmp_path), "/srv/pg/data/global/pg_control")
    assert kept_for(code, ReasonKind.DATA_TREE) == set()  # a tree with programs is code, not data


def test_a_volume_path_keeps_its_mode_and_owner(tmp_path):
    layer = debian_like()
    layer.directory("/var/lib/app", mode=0o750, uid=999)
    closure = rule_closure(layer.rootfs(tmp_path), facts=facts_with(Volumes={"/var/lib/app": {}}))
    assert main_reason(closure, "/var/lib/app") == Reason(ReasonKind.VOLUME, source="/var/lib/app")
    plan = plan_image(closure, layer.rootfs(tmp_path), facts_with())
    entry = next(e for e in plan.entries if e.path == P("/var/lib/app"))
    assert (entry.mode, entry.uid) == (0o750, 999)


def test_nothing_the_run_wrote_is_kept(tmp_path):
    """Kept files come from the image's index, never from the container: the pid file nginx writes at
    start, a log, a lock are not in the image and so not in the result."""
    layer = debian_like()
    layer.directory("/run")
    closure = rule_closure(layer.rootfs(tmp_path), "/run/nginx.pid", "/var/log/nginx/error.log", "/run/lock/x")
    assert not {P("/run/nginx.pid"), P("/var/log/nginx/error.log"), P("/run/lock/x")} & set(closure.kept)


def everything_image(tmp_path: Path) -> tuple[RootFS, Trace, ImageFacts]:
    """One image in which every rule has something to keep."""
    base = debian_like()
    for layer in (python_runtime(), site_packages(), zoneinfo(), ca_image(), database_image()):
        base.members += [m for m in layer.members if m[0].name.split("/")[0] not in ("etc", "bin", "lib")
                         or m[0].name.startswith(("etc/ssl", "etc/localtime"))]
    base.file("/etc/nsswitch.conf", NSSWITCH_CONF, mode=0o644)
    base.file(f"{IMAGE_LIBS}/libnss_dns.so.2", b"\x00")
    base.file(f"{IMAGE_LIBS}/gconv/ISO8859-1.so", b"\x00")
    base.file(f"{IMAGE_LIBS}/gconv/UTF-16.so", b"\x00")
    base.file("/usr/lib/locale/C.utf8/LC_CTYPE", b"\x00", mode=0o644)
    base.directory("/srv/db/empty")
    app = Layer()
    app.file("/app/lazy.py", b"", mode=0o644)
    app.file("/app/export.py", b"import subprocess\nsubprocess.run(['ls', '-l'])\n", mode=0o644)
    app.file("/app/start.sh", b"#!/bin/bash\nif [ -f /app/lazy.py ]; then env; fi\nexec \"$@\"\n")
    app.file("/app/package.json", b'{"dependencies": {"left-pad": "1"}}', mode=0o644)
    app.file("/app/node_modules/left-pad/index.js", b"module.exports = 1", mode=0o644)
    app.file("/etc/app/app.conf", b"workers = 2", mode=0o644)
    rootfs = stacked(tmp_path, base, app)
    paths = ("/usr/lib/python3.11/__pycache__/os.cpython-311.pyc", "/usr/lib/python3/dist-packages/flask/__init__.py",
             "/usr/share/zoneinfo/Etc/UTC", "/usr/lib/x86_64-linux-gnu/libssl.so.3", "/etc/nsswitch.conf",
             f"{IMAGE_LIBS}/gconv/ISO8859-1.so", "/srv/pg/data/global/pg_control", "/srv/db")
    traced = trace_of(*paths).paths + trace_of("/usr/bin/python3.11", access=Access.EXEC).paths
    trace = Trace(traced, TraceHealth(len(traced), False), RunOutcome("server", None, True, ()))
    return rootfs, trace, facts_with(WorkingDir="/app", Env=["LANG=C.UTF-8"], Entrypoint=["/app/start.sh"])


@pytest.mark.parametrize("name", RULE_NAMES)
def test_each_rule_can_be_turned_off(tmp_path, name):
    rootfs, trace, facts = everything_image(tmp_path)
    kind = next(rule.kind for rule in RULES if rule.name == name)
    on = compute_closure(trace, rootfs, facts, ClosureOptions(always_keep=(), layer_steps=("", "COPY . /app")))
    off = compute_closure(
        trace, rootfs, facts, ClosureOptions(always_keep=(), layer_steps=("", "COPY . /app"), disabled_rules={name})
    )
    assert kept_for(on, kind), f"{name} keeps nothing in the test image"
    assert not any(kind in (r.kind for r in reasons) for reasons in off.kept.values())


def test_unknown_rule_names_are_refused():
    with pytest.raises(ValueError):
        ClosureOptions(disabled_rules=frozenset({"no-such-rule"}))


def test_a_namespace_package_is_never_kept_whole(tmp_path):
    layer = debian_like()
    site = "/usr/local/lib/python3.11/site-packages"
    layer.file(f"{site}/google/protobuf/__init__.py", b"", mode=0o644)
    layer.file(f"{site}/google/protobuf/message.py", b"", mode=0o644)
    layer.file(f"{site}/protobuf-4.0.dist-info/RECORD",
               b"google/protobuf/__init__.py,,\ngoogle/protobuf/message.py,,\n", mode=0o644)
    layer.file(f"{site}/protobuf-4.0.dist-info/top_level.txt", b"google\n", mode=0o644)
    layer.file(f"{site}/google/cloud/storage/__init__.py", b"", mode=0o644)
    layer.file(f"{site}/google_cloud_storage-2.0.dist-info/RECORD", b"google/cloud/storage/__init__.py,,\n",
               mode=0o644)
    closure = rule_closure(layer.rootfs(tmp_path), f"{site}/google/protobuf/__init__.py")
    assert P(f"{site}/google/protobuf/message.py") in closure.kept
    assert P(f"{site}/protobuf-4.0.dist-info/RECORD") in closure.kept
    assert P(f"{site}/google/cloud/storage/__init__.py") not in closure.kept


def test_the_report_says_what_each_rule_kept_and_which_were_off(tmp_path):
    from slim.model import BuiltImage
    from slim.reporting.report import build_report

    layer = zoneinfo()
    layer.file("/var/lib/app/seed.db", b"seed", mode=0o644)
    rootfs = layer.rootfs(tmp_path)
    facts = facts_with(Volumes={"/var/lib/app": {}})
    closure = rule_closure(rootfs, "/usr/share/zoneinfo/Etc/UTC", facts=facts, disabled_rules=frozenset({"nss"}))
    built = BuiltImage(id="sha256:x", layer_diff_id="sha256:y", layer_size=0, compressed_size=0, size=1,
                       files=len(closure.kept))
    data = build_report(facts, rootfs, trace_of(), closure, built, None, None, {}, disabled_rules=("nss",),
                        app_files="touched").to_json()
    assert data["options"]["no_rules"] == ["nss"] and data["options"]["app_files"] == "touched"
    assert data["bytes_by_reason"]["timezone-data"] == 5  # Europe/Paris; Etc/UTC is traced
    assert data["volumes"] == [{"path": "/var/lib/app", "files": 1, "bytes": 4, "note": data["volumes"][0]["note"]}]
    assert "seed data" in data["volumes"][0]["note"] and "kept whole" in data["volumes"][0]["note"]


# ---------------------------------------------------------------- what deployed code can reach (issue 10)


def node_app() -> tuple[Layer, Layer]:
    """An npm-installed app: express nested and hoisted dependencies, a scoped one, a dev one, a workspace."""
    base = debian_like()
    base.file("/usr/bin/node", b"\x00node", mode=0o755)
    app = Layer()
    app.file("/app/package.json", b'{"dependencies": {"express": "4", "@acme/log": "1"}, "devDependencies":'
             b' {"jest": "29"}, "workspaces": ["packages/*"]}', mode=0o644)
    app.file("/app/server.js", b"require('express')", mode=0o644)
    app.file("/app/packages/ui/package.json", b'{"dependencies": {"lodash": "4"}}', mode=0o644)
    modules = "/app/node_modules"
    for package, manifest in (("express", b'{"dependencies": {"debug": "2", "body-parser": "1"}}'),
                              ("express/node_modules/debug", b'{"dependencies": {"ms": "2"}}'),
                              ("debug", b"{}"), ("body-parser", b"{}"), ("ms", b"{}"), ("@acme/log", b"{}"),
                              ("jest", b"{}"), ("lodash", b"{}")):
        app.file(f"{modules}/{package}/package.json", manifest, mode=0o644)
        app.file(f"{modules}/{package}/index.js", b"module.exports = 1", mode=0o644)
    return base, app


def test_node_dependencies_are_resolved_as_node_does_and_never_dev_ones(tmp_path):
    base, app = node_app()
    closure = rule_closure(stacked(tmp_path, base, app), "/app/server.js", facts=facts_with(Cmd=["node", "/app/server.js"]),
                           layer_steps=("", "COPY . /app"))
    declared = kept_for(closure, ReasonKind.DECLARED)
    modules = "/app/node_modules"
    assert {f"{modules}/express/index.js", f"{modules}/@acme/log/index.js", f"{modules}/body-parser/index.js",
            f"{modules}/express/node_modules/debug/index.js", f"{modules}/ms/index.js",
            f"{modules}/lodash/index.js"} <= declared
    # express's own debug is the nested one; the hoisted copy serves nobody who declares it
    assert main_reason(closure, f"{modules}/express/node_modules/debug/index.js") == Reason(
        ReasonKind.DECLARED, f"{modules}/express/package.json", "debug")
    assert P(f"{modules}/debug/index.js") not in closure.kept
    assert P(f"{modules}/jest/index.js") not in closure.kept


def test_own_configuration_is_kept_and_the_base_image_configuration_is_not(tmp_path):
    base = debian_like()
    base.file("/etc/motd", b"base image", mode=0o644)
    app = Layer()
    app.file("/etc/app/htpasswd", b"admin:x", mode=0o600)
    app.file("/etc/init.d/app", b"#!/bin/sh\nexec app\n", mode=0o755)  # a program, not configuration
    app.symlink("/etc/rc2.d/S01app", "../init.d/app")
    closure = rule_closure(stacked(tmp_path, base, app), layer_steps=("", "RUN /bin/sh -c printf admin > /etc/app/htpasswd"))
    assert main_reason(closure, "/etc/app/htpasswd").kind is ReasonKind.OWN_CONFIGURATION
    assert P("/etc/motd") not in closure.kept
    assert P("/etc/init.d/app") not in closure.kept and P("/etc/rc2.d/S01app") not in closure.kept


def test_only_sightings_that_lead_into_the_image_count_and_the_others_change_no_closure(tmp_path):
    """What a run creates (a pid file, a cache) and what it checks for in vain leave the closure as it is:
    an early closure made without them is the closure of the whole trace (slim.pipeline.EarlyBuild)."""
    layer = debian_like()
    layer.directory("/run")
    rootfs = layer.rootfs(tmp_path)
    early = trace_of("/etc/os-release", "/usr/bin/ls")  # sorted, as a trace is
    created = TracedPath(P("/run/app.pid"), frozenset({Access.OPEN}), "/usr/bin/prog", "shutdown")
    through_a_link = TracedPath(P("/bin/env"), frozenset({Access.EXEC}), "/usr/bin/prog", "shutdown")
    in_vain = Lookup(P("/etc/app.d/extra.conf"), follow=True, program="/usr/bin/prog", phase="shutdown")
    found = Lookup(P("/etc/group"), follow=True, program="/usr/bin/prog", phase="shutdown")
    whole = dataclasses.replace(early, paths=tuple(sorted((*early.paths, created), key=lambda t: t.path)),
                                lookups=(in_vain,))
    assert sightings_that_count(whole, rootfs) == sightings_that_count(early, rootfs) == Seen(early.paths)
    options = ClosureOptions(**dataclasses.asdict(NO_ALWAYS))
    assert compute_closure(whole, rootfs, facts_with(), options) == compute_closure(early, rootfs, facts_with(), options)
    # A path into the image (through a symlink too) and a lookup that finds something count.
    more = dataclasses.replace(whole, paths=(*whole.paths, through_a_link), lookups=(in_vain, found))
    assert sightings_that_count(more, rootfs) == Seen((*early.paths, through_a_link), (found,))
