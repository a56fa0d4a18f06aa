"""The few engine operations the pipeline needs, as a Protocol.

Stages depend on this, never on the Docker SDK; `slim.adapters.docker_engine.DockerEngine` is the one
implementation (and the one module that imports `docker`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Protocol

from .enginehost import EngineHost
from .model import ImageFacts

OWNER_LABEL = "io.slimtrace.owner"  # set on every container we create, so leaks are findable


@dataclass(frozen=True)
class BindMount:
    source: str  # host path
    target: str  # path inside the container
    read_only: bool = True


# What `docker run --ulimit` accepts: setrlimit(2)'s resources without the RLIMIT_ prefix.
ULIMIT_NAMES = (
    "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
    "rtprio", "rttime", "sigpending", "stack",
)


@dataclass(frozen=True)
class Ulimit:
    name: str  # one of ULIMIT_NAMES
    soft: int  # -1: unlimited
    hard: int


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    entrypoint: tuple[str, ...] | None = None  # None: the image's own
    command: tuple[str, ...] | None = None  # None: the image's own
    env: Mapping[str, str] = field(default_factory=dict)  # added to the image's Env
    user: str | None = None
    publish_tcp: tuple[int, ...] = ()  # container ports published on 127.0.0.1, ephemeral host ports
    mounts: tuple[BindMount, ...] = ()
    network: str | None = None
    stop_signal: str | None = None  # the image's StopSignal ("SIGQUIT", "3"); None: SIGTERM
    ulimits: tuple[Ulimit, ...] = ()  # the engine's defaults for the others
    cap_add: tuple[str, ...] = ()  # capabilities beyond the engine's default set ("NET_RAW")
    name: str | None = None  # None: the engine picks one
    labels: Mapping[str, str] = field(default_factory=dict)  # besides OWNER_LABEL


@dataclass(frozen=True)
class ExecResult:
    exit_code: int  # -1 when it timed out
    output: bytes
    timed_out: bool = False  # still running at the timeout: killed, or left to die with its container


@dataclass(frozen=True)
class StoredLayer:
    """Where the engine keeps one layer on this machine: its files, and its record of the layer's tar
    headers (tar-split), from which it streams the layer again on `docker save`."""

    diff: Path  # the layer's own directory (what it adds, whiteouts as the engine stores them)
    tar_split: Path  # gzip-compressed JSON lines: the tar's raw header segments and its file entries


@dataclass(frozen=True)
class StoredImage:
    config: Path  # the image config JSON, as `docker save` would write it
    layers: tuple[StoredLayer, ...]  # bottom layer first


class Engine(Protocol):
    def host(self) -> EngineHost:
        """The machine the engine runs on and its storage driver, as the engine describes them."""
        ...

    def inspect_image(self, ref: str) -> ImageFacts: ...

    def save_image(self, image_id: str) -> Iterator[bytes]:
        """`docker save` tar stream, in chunks."""
        ...

    def stored_image(self, image_id: str) -> StoredImage | None:
        """Where the image lies in the engine's storage, when the engine exposes it in a layout slimtrace
        reads in place; None when it must be exported with save_image."""
        ...

    def load_image(self, chunks: Iterable[bytes]) -> str:
        """Load a `docker save`-format tar; returns the loaded image id."""
        ...

    def tag_image(self, image_id: str, tag: str) -> None: ...

    def remove_image(self, ref: str) -> None:
        """Remove a tag (the image goes only with its last tag), or an untagged image by id; no error if gone
        or still used by a container."""
        ...

    def repository_tags(self, repository: str) -> tuple[str, ...]:
        """Every `repository:tag` the engine holds for this repository."""
        ...

    def labelled_containers(self, label: str) -> Mapping[str, str]:
        """Container id -> value of `label`, for every container carrying it, running or not."""
        ...

    def create_container(self, spec: ContainerSpec) -> str: ...

    def start(self, container_id: str) -> None: ...

    def wait(self, container_id: str, timeout: float) -> int | None:
        """Exit code, or None if still running after `timeout` seconds."""
        ...

    def is_running(self, container_id: str) -> bool: ...

    def is_paused(self, container_id: str) -> bool: ...

    def logs(self, container_id: str, tail: int = 20) -> str: ...

    def stdout(self, container_id: str) -> bytes: ...

    def host_port(self, container_id: str, port: int) -> int | None:
        """The 127.0.0.1 port a published container TCP port is reachable on; None once it stopped."""
        ...

    def pid(self, container_id: str) -> int | None:
        """Host pid of the container's first process (its namespaces are the container's); None unless running."""
        ...

    def exec(
        self, container_id: str, argv: tuple[str, ...], user: str | None = None, timeout: float | None = None
    ) -> ExecResult:
        """Run a command in the running container; after `timeout` seconds give up on it (timed_out)."""
        ...

    def stop(self, container_id: str, timeout: int = 10) -> None: ...

    def remove_container(self, container_id: str) -> None:
        """Force-remove with its anonymous volumes; no error if already gone."""
        ...
