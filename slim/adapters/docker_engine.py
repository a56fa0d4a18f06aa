"""The Docker engine edge: the only module that imports the Docker SDK.

Implements slim.engine.Engine. Every SDK exception is translated here into a slim.errors type, so the rest
of the code never sees docker.errors.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
import signal
import threading
from pathlib import Path
from typing import Iterable, Iterator

import docker
import docker.errors
import requests.exceptions

from slim.engine import OWNER_LABEL, ContainerSpec, ExecResult, StoredImage, Ulimit
from slim.enginehost import EngineHost
from slim.errors import ContainerStartFailed, EngineUnreachable, ImageNotFound, SlimError
from slim.model import ImageFacts
from .storage import stored_image

SAVE_CHUNK = 1 << 20
# Podman sets high nofile/nproc limits by default, which an OCI runtime may not be allowed to raise to
# ("error setting rlimit type 6: operation not permitted"); these it can always set. --ulimit overrides.
PODMAN_ULIMITS = (Ulimit("nofile", 1024, 1024), Ulimit("nproc", 1024, 1024))
EXEC_KILL_GRACE = 5.0  # seconds for a killed exec's stream to end

# Failures that mean "no engine there", as opposed to "the engine said no".
_UNREACHABLE = (docker.errors.DockerException, requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError)


def _translate(method):
    """Turn SDK and transport failures into our one-line errors (for a generator: while it streams)."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streaming(*args, **kwargs):
            with _translated():
                yield from method(*args, **kwargs)

        return streaming

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _translated():
            return method(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def _translated():
    try:
        yield
    except SlimError:
        raise
    except docker.errors.APIError as e:
        raise SlimError(f"Docker engine error: {e.explanation or e}") from e
    except _UNREACHABLE as e:
        raise EngineUnreachable(_short(e)) from e


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


class DockerEngine:
    """slim.engine.Engine over the Docker SDK (talks to DOCKER_HOST or the local socket)."""

    def __init__(self, client: docker.DockerClient | None = None):
        self._client = client or self._connect()
        with _translated():
            self._components = {part.get("Name") for part in self._client.version().get("Components") or ()}

    @property
    def is_podman(self) -> bool:
        return "Podman Engine" in self._components

    @staticmethod
    def _connect() -> docker.DockerClient:
        try:
            client = docker.from_env(timeout=120)
            client.ping()
            return client
        except _UNREACHABLE as e:
            raise EngineUnreachable(f"{_short(e)} (is dockerd running?)") from e

    @_translate
    def host(self) -> EngineHost:
        info = self._client.info()
        return EngineHost(
            hostname=str(info.get("Name") or ""),
            kernel=str(info.get("KernelVersion") or ""),
            memory=int(info.get("MemTotal") or 0),
            storage_driver=str(info.get("Driver") or ""),
        )

    # ------------------------------------------------------------ images

    @_translate
    def inspect_image(self, ref: str) -> ImageFacts:
        try:
            attrs = self._client.api.inspect_image(ref)
        except docker.errors.ImageNotFound as e:
            raise ImageNotFound(ref) from e
        except docker.errors.APIError as e:
            if e.status_code in (400, 404):  # malformed references come back as 400
                raise ImageNotFound(ref) from e
            raise
        return ImageFacts(
            ref=ref,
            id=attrs["Id"],
            repo_tags=tuple(attrs.get("RepoTags") or ()),
            size=int(attrs.get("Size") or 0),
            os=attrs.get("Os") or "linux",
            architecture=attrs.get("Architecture") or "amd64",
            created=attrs.get("Created") or "",
            layer_diff_ids=tuple(attrs.get("RootFS", {}).get("Layers") or ()),
            config=dict(attrs.get("Config") or {}),
        )

    @_translate
    def save_image(self, image_id: str) -> Iterator[bytes]:
        yield from self._client.api.get_image(image_id, chunk_size=SAVE_CHUNK)

    @_translate
    def stored_image(self, image_id: str) -> StoredImage | None:
        attrs = self._client.api.inspect_image(image_id)
        info = self._client.info()
        if not info.get("DockerRootDir"):
            return None
        return stored_image(
            Path(info["DockerRootDir"]),
            attrs["Id"],
            attrs.get("RootFS", {}).get("Layers") or (),
            attrs.get("GraphDriver") or {},
            {str(key): str(value) for key, value in info.get("DriverStatus") or ()},
        )

    @_translate
    def load_image(self, chunks: Iterable[bytes]) -> str:
        # requests sends a generator with chunked encoding: the archive is never joined in memory.
        loaded = self._client.api.load_image(iter(chunks))
        for message in loaded:
            if "error" in message:
                raise SlimError(f"the engine refused the slimmed image: {message['error']}")
            stream = message.get("stream", "").strip()
            # Docker names the id of an untagged archive ("Loaded image ID: sha256:<hex>") and the tag of a
            # tagged one ("Loaded image: <tag>"); Podman says "Loaded image: <id or name>".
            if stream.startswith("Loaded image ID: "):
                return stream.removeprefix("Loaded image ID: ")
            if stream.startswith("Loaded image: "):
                return self._client.api.inspect_image(stream.removeprefix("Loaded image: "))["Id"]
        raise SlimError("the engine loaded the slimmed image but did not say its id")

    @_translate
    def tag_image(self, image_id: str, tag: str) -> None:
        repository, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
        self._client.api.tag(image_id, repository, version or "latest")

    @_translate
    def remove_image(self, ref: str) -> None:
        try:
            self._client.api.remove_image(ref, noprune=False)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: a container uses it, so it is not ours to remove now
                raise

    @_translate
    def repository_tags(self, repository: str) -> tuple[str, ...]:
        images = self._client.api.images(name=repository)
        return tuple(tag for image in images for tag in image.get("RepoTags") or () if tag.startswith(f"{repository}:"))

    @_translate
    def labelled_containers(self, label: str) -> dict[str, str]:
        listed = self._client.api.containers(all=True, filters={"label": label})
        return {container["Id"]: (container.get("Labels") or {}).get(label, "") for container in listed}

    # ------------------------------------------------------------ containers

    @_translate
    def create_container(self, spec: ContainerSpec) -> str:
        api = self._client.api
        host_config = api.create_host_config(
            port_bindings={port: ("127.0.0.1", None) for port in spec.publish_tcp},
            binds={m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in spec.mounts},
            network_mode=spec.network,
            ulimits=[docker.types.Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in self._ulimits(spec)] or None,
            cap_add=list(spec.cap_add) or None,
        )
        created = api.create_container(
            image=spec.image,
            entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
            command=list(spec.command) if spec.command is not None else None,
            environment=dict(spec.env) or None,
            user=spec.user or "",
            ports=list(spec.publish_tcp) or None,
            host_config=host_config,
            labels={**spec.labels, OWNER_LABEL: "slimtrace"},
            name=spec.name,
        )
        return created["Id"]

    def _ulimits(self, spec: ContainerSpec) -> tuple[Ulimit, ...]:
        given = {ulimit.name for ulimit in spec.ulimits}
        defaults = PODMAN_ULIMITS if self.is_podman else ()
        return spec.ulimits + tuple(ulimit for ulimit in defaults if ulimit.name not in given)

    @_translate
    def start(self, container_id: str) -> None:
        try:
            self._client.api.start(container_id)
        except docker.errors.APIError as e:
            # The container exists but its process could not be started: runc's own words say why.
            explanation = str(e.explanation or "")
            if e.status_code in (400, 500) and "unable to start container process: " in explanation:
                # Docker: "failed to create shim task: OCI runtime create failed: ... process: exec: ...";
                # Podman: "runc: runc create failed: ... process: ...: OCI permission denied": the end says why.
                why = explanation.rpartition("unable to start container process: ")[2].removesuffix(": unknown")
                hint = " (a --ulimit above what the engine may set?)" if "rlimit" in why else ""
                raise ContainerStartFailed(why[:200] + hint) from e
            raise

    @_translate
    def wait(self, container_id: str, timeout: float) -> int | None:
        if timeout <= 0:
            state = self._client.api.inspect_container(container_id)["State"]
            return None if state["Running"] else int(state["ExitCode"])
        try:
            return int(self._client.api.wait(container_id, timeout=timeout)["StatusCode"])
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            if self.is_running(container_id):
                return None
            raise

    @_translate
    def is_running(self, container_id: str) -> bool:
        return bool(self._client.api.inspect_container(container_id)["State"]["Running"])

    @_translate
    def is_paused(self, container_id: str) -> bool:
        return bool(self._client.api.inspect_container(container_id)["State"].get("Paused"))

    @_translate
    def logs(self, container_id: str, tail: int = 20) -> str:
        return self._client.api.logs(container_id, tail=tail).decode("utf-8", "replace")

    @_translate
    def stdout(self, container_id: str) -> bytes:
        return self._client.api.logs(container_id, stdout=True, stderr=False)

    @_translate
    def host_port(self, container_id: str, port: int) -> int | None:
        # The engine forgets the bindings once the container stops: None then.
        ports = self._client.api.inspect_container(container_id)["NetworkSettings"]["Ports"] or {}
        for binding in ports.get(f"{port}/tcp") or ():
            if binding.get("HostIp") in ("127.0.0.1", "", "0.0.0.0"):
                return int(binding["HostPort"])
        return None

    @_translate
    def pid(self, container_id: str) -> int | None:
        state = self._client.api.inspect_container(container_id)["State"]
        return int(state["Pid"]) if state.get("Running") and state.get("Pid") else None

    @_translate
    def exec(
        self, container_id: str, argv: tuple[str, ...], user: str | None = None, timeout: float | None = None
    ) -> ExecResult:
        api = self._client.api
        created = api.exec_create(container_id, list(argv), user=user or "")
        # The SDK reads the exec's output with no timeout, so it reads on a thread we can stop waiting for.
        reading = _ExecReading(api, created["Id"])
        reader = threading.Thread(target=reading.run, name="slimtrace-exec", daemon=True)
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            _kill_exec(api, created["Id"])
            reader.join(EXEC_KILL_GRACE)  # once killed, the engine ends the stream and the thread returns
            return ExecResult(exit_code=-1, output=b"", timed_out=True)
        if reading.error is not None:
            raise reading.error
        code = api.exec_inspect(created["Id"])["ExitCode"]
        return ExecResult(exit_code=int(code if code is not None else -1), output=reading.output)

    @_translate
    def stop(self, container_id: str, timeout: int = 10) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self._client.api.stop(container_id, timeout=timeout)

    @_translate
    def remove_container(self, container_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self._client.api.remove_container(container_id, v=True, force=True)


class _ExecReading:
    """An exec's output, read to its end on a thread of its own."""

    def __init__(self, api: docker.APIClient, exec_id: str):
        self._api = api
        self._exec_id = exec_id
        self.output = b""
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.output = self._api.exec_start(self._exec_id)
        except Exception as error:  # noqa: BLE001 -- re-raised on the caller's thread, where _translate sees it
            self.error = error


def _kill_exec(api: docker.APIClient, exec_id: str) -> None:
    """SIGKILL a timed-out exec's process. The engine has no call for that, but its Pid is a host pid and
    we run on the engine's host (as tracing requires). Its children die with the container."""
    with contextlib.suppress(docker.errors.APIError, ProcessLookupError, PermissionError):
        pid = api.exec_inspect(exec_id).get("Pid")
        if pid:
            os.kill(int(pid), signal.SIGKILL)
