"""What several test modules share: running slim as a user does, hand-built ELF files, image layers and
closures, a local HTTP server, engine-free stand-ins for probes, and containers run side by side."""
from __future__ import annotations

import dataclasses
import io
import ipaddress
import os
import ssl
import struct
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Self

import docker

from fixtures.catalog import has_image
from probes import Target
from probes.listening import Listener, Readiness
from slim.build.closure import ClosureOptions, compute_closure
from slim.engine import ExecResult
from slim.image.elf import ELF_MAGIC
from slim.image.rootfs import RootFS
from slim.model import Access, Closure, ImageFacts, RunOutcome, Trace, TraceHealth, TracedPath


def slim(*args: str | Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m slim ARGS` as a user runs it (no GitHub step summary written); a traceback is never an answer."""
    result = subprocess.run([sys.executable, "-m", "slim", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                            env={**os.environ, "GITHUB_STEP_SUMMARY": "", **(env or {})}, timeout=1800)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def fanotify_queue_limit() -> int:
    """The kernel's fanotify queue limit, read when asked: collecting the tests needs no fanotify."""
    return int(Path("/proc/sys/fs/fanotify/max_queued_events").read_text())


# ---------------------------------------------------------------- a local HTTP server


def make_handler(pages: dict, ready_at: float = 0.0):
    """A handler serving `pages`: path -> body, (status, body) or (status, content type, body); a callable
    status or body is called at each request. Before `ready_at` it hangs up at once, as docker-proxy does
    while nothing listens in the container yet."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if time.monotonic() < ready_at:
                self.close_connection = True
                return
            status, kind, body = _page(self.path, pages.get(self.path))
            body = body() if callable(body) else body
            self.reply(status() if callable(status) else status, kind, body if isinstance(body, bytes) else body.encode())

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            echo = f"{self.headers.get('X-Token')}:{self.rfile.read(length).decode()}"
            self.reply(201, "application/octet-stream", echo.encode())

        def reply(self, status: int, kind: str, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def _page(path: str, page) -> tuple:
    if page is None:
        return 404, "text/plain", "not found"
    if isinstance(page, tuple) and len(page) == 3:
        return page
    status, body = page if isinstance(page, tuple) else (200, page)
    return status, "text/html; charset=utf-8" if path.endswith(("/", ".html")) else "application/octet-stream", body


@contextmanager
def serving(pages: dict, tls: ssl.SSLContext | None = None, ready_at: float = 0.0, port: int = 0):
    """A real HTTP server on 127.0.0.1 serving `pages` (see make_handler); yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(pages, ready_at))
    if tls:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- ELF files built with the host's gcc


TINY_LIB_C = "int tiny(void) { return 42; }\n"
TINY_APP_C = "int tiny(void);\nint main(void) { return tiny() == 42 ? 0 : 1; }\n"


def gcc(output: Path, source: str, *flags: str) -> Path:
    """Compile the C `source` text into `output` (flags go after the source, as libraries must)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    source_file = output.parent / f"{output.name}.c"
    source_file.write_text(source)
    subprocess.run(["gcc", "-O1", "-o", str(output), str(source_file), *flags], check=True)
    return output


def build_tiny_lib(directory: Path, *flags: str) -> Path:
    return gcc(directory / "libtiny.so.1", TINY_LIB_C, "-shared", "-fPIC", "-Wl,-soname,libtiny.so.1", *flags)


def build_tiny_app(directory: Path, *link_flags: str) -> tuple[Path, Path]:
    """gcc-built `app` linking `lib/libtiny.so.1`; returns (app, lib)."""
    lib = build_tiny_lib(directory / "lib")
    return gcc(directory / "app", TINY_APP_C, f"-L{lib.parent}", "-l:libtiny.so.1", *link_flags), lib


def fake_elf32() -> bytes:
    """A bare 32-bit little-endian i386 ELF header with no segments: enough for ld.so to read its class
    and machine and reject it for a 64-bit program (the host has no 32-bit libraries to borrow)."""
    ident = ELF_MAGIC + bytes([1, 1, 1]) + bytes(9)  # ELFCLASS32, little endian, version 1
    e_type, e_machine = 3, 3  # ET_DYN, EM_386
    return ident + struct.pack("<HHIIIIIHHHHHH", e_type, e_machine, 1, 0, 0, 0, 0, 52, 32, 0, 40, 0, 0)


# ---------------------------------------------------------------- image layers built by hand


MTIME = 1_700_000_000
# A real file capability (cap_net_bind_service+ep): binary, with NULs and bytes that are not UTF-8.
CAPABILITY = bytes.fromhex("0100000200040000000000000000000000000000")


def member(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, **fields) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data)
    info.mtime = MTIME
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.uname = info.gname = "root"
    xattrs = fields.pop("xattrs", {})
    info.pax_headers = {f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape") for key, value in xattrs.items()}
    for field, value in fields.items():
        setattr(info, field, value)
    return info, data


def directory(name: str, **fields) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, kind=tarfile.DIRTYPE, **fields)


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, kind=tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink(name: str, target: str, **fields) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, kind=tarfile.LNKTYPE, linkname=target, **fields)


def whiteout(path: str) -> tuple[tarfile.TarInfo, bytes]:
    parent, _, name = path.rpartition("/")
    return member(f"{parent}/.wh.{name}" if parent else f".wh.{name}")


def layer_tar(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return path


def rootfs(tmp_path: Path, *layers: list[tuple[tarfile.TarInfo, bytes]]) -> RootFS:
    return RootFS.from_layers([layer_tar(tmp_path / f"layer{i}.tar", *members) for i, members in enumerate(layers)])


# ---------------------------------------------------------------- closures of hand-built images


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

    def add(
        self, path: str, kind: bytes, *, data: bytes | None = None, link: str = "", mode: int = 0o755, uid: int = 0
    ) -> None:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.type, info.mode, info.linkname, info.mtime = kind, mode, link, 1700000000
        info.uid = info.gid = uid
        if data is not None:
            info.size = len(data)
        self.members.append((info, data))

    def file(self, path: str, data: bytes, mode: int = 0o755, uid: int = 0) -> None:
        self.add(path, tarfile.REGTYPE, data=data, mode=mode, uid=uid)

    def host(self, path: str, source: Path | str) -> None:
        self.file(path, Path(source).read_bytes())

    def symlink(self, path: str, target: str) -> None:
        self.add(path, tarfile.SYMTYPE, link=target, mode=0o777)

    def hardlink(self, path: str, target: str) -> None:
        self.add(path, tarfile.LNKTYPE, link=target.lstrip("/"))

    def directory(self, path: str, mode: int = 0o755, uid: int = 0) -> None:
        self.add(path, tarfile.DIRTYPE, mode=mode, uid=uid)

    def tar(self, tmp_path: Path) -> Path:
        tar_path = tmp_path / f"layer-{len(list(tmp_path.glob('layer-*.tar')))}.tar"
        with tarfile.open(tar_path, "w") as tar:
            for info, data in self.members:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return tar_path

    def rootfs(self, tmp_path: Path) -> RootFS:
        return RootFS.from_layers([self.tar(tmp_path)])


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


# ---------------------------------------------------------------- probes without a container


class FakeEngine:
    """The engine calls probes make, answered without a container. `exec_result` may be a list: one result
    per attempt, the last one repeated."""

    def __init__(
        self, running: bool = True, exit_code: int = 0, exec_result: ExecResult | list[ExecResult] | None = None
    ):
        self.running = running
        self.exit_code = exit_code
        self.exec_results = exec_result if isinstance(exec_result, list) else [exec_result]
        self.execs: list[tuple[tuple[str, ...], str | None]] = []
        self.exec_timeouts: list[float | None] = []

    def pid(self, container_id: str) -> int | None:
        return 4242 if self.running else None

    def is_running(self, container_id: str) -> bool:
        return self.running

    def wait(self, container_id: str, timeout: float) -> int | None:
        return None if self.running else self.exit_code

    def exec(
        self, container_id: str, argv: tuple[str, ...], user: str | None = None, timeout: float | None = None
    ) -> ExecResult:
        self.execs.append((argv, user))
        self.exec_timeouts.append(timeout)
        return self.exec_results[min(len(self.execs), len(self.exec_results)) - 1]


def target(
    port: int, engine: FakeEngine | None = None, container_port: int = 80, readiness: Readiness | None = None
) -> Target:
    return Target(engine or FakeEngine(), "c0ffee", "127.0.0.1", {container_port: port}, readiness=readiness)


def sockets(schedule: dict[float, set[tuple[str, int]]]):
    """A socket reader whose answer changes over time: {seconds from now: {(address, port), ...}}."""
    started = time.monotonic()

    def read(pid: int) -> frozenset[Listener]:
        elapsed = time.monotonic() - started
        current = max((at for at in schedule if at <= elapsed), default=None)
        found = schedule[current] if current is not None else set()
        return frozenset(Listener(ipaddress.ip_address(address), port) for address, port in found)

    return read


# ---------------------------------------------------------------- running images side by side


def cost(report: dict) -> str:
    """One line for the test log: the size and what each reason keeps."""
    reasons = ", ".join(f"{kind} {size:,}" for kind, size in report["bytes_by_reason"].items() if size)
    return f"{report['result']['size']:,} bytes ({reasons})"


class Running:
    """A detached container with its port published on 127.0.0.1; removed on exit."""

    def __init__(self, client: docker.DockerClient, image: str, port: int | None = None,
                 environment: dict[str, str] | None = None):
        ports = {f"{port}/tcp": ("127.0.0.1", None)} if port else {}
        self.container = client.containers.run(image, detach=True, ports=ports, environment=environment)
        self.port = port

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.container.remove(force=True, v=True)

    @property
    def host_port(self) -> int:
        self.container.reload()
        return int(self.container.attrs["NetworkSettings"]["Ports"][f"{self.port}/tcp"][0]["HostPort"])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.host_port}{path}"

    def get(self, path: str, attempts: int = 150, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for _ in range(attempts):
            try:
                request = urllib.request.Request(self.url(path), headers=headers or {})
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()
            except OSError:  # not listening yet
                time.sleep(0.2)
        raise AssertionError(f"{path} never answered: {self.container.logs().decode(errors='replace')[-2000:]}")

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")


# ---------------------------------------------------------------- images a test makes


class Images:
    """Tags handed out to one test; every one of them, and every image id noted, is removed at the end."""

    def __init__(self, client: docker.DockerClient):
        self.client = client
        self.tags: list[str] = []
        self.ids: list[str] = []

    def tag(self, name: str) -> str:
        tag = f"slimtrace-issue3/{name}:{uuid.uuid4().hex[:10]}"
        self.tags.append(tag)
        return tag

    def exists(self, ref: str) -> bool:
        return has_image(self.client, ref)

    def remove_all(self) -> None:
        for ref in self.tags + self.ids:
            try:
                self.client.images.remove(ref, force=True)
            except docker.errors.ImageNotFound:
                pass


def comparisons(report: dict) -> dict[str, dict]:
    return {comparison["probe"]: comparison for comparison in report["verification"]["comparisons"]}
