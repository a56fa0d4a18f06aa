"""The benchmark corpus: fixture images, how `slim build` probes each, and bench's own functional check.

The functional check is independent of slimtrace's verification: it runs the original and the slimmed
image side by side (published on 127.0.0.1 only) and compares what a user of the app would see.
"""
from __future__ import annotations

import contextlib
import hashlib
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

from slim.engine import ContainerSpec, Engine

PROBE_FILES = Path(__file__).parent / "probefiles"
LOOPBACK = "127.0.0.1"
STARTUP_SECONDS = 60.0  # for a server to answer, or a batch job to finish
RETRY_INTERVAL = 0.25
REQUEST_TIMEOUT = 10.0

# nodeapp's /report says when it was generated: the same in no two runs (bench/probefiles/nodeapp.yaml too).
REPORT_TIMESTAMP = '"generated":"[^"]*"'

Observation = dict[str, str]  # what a check saw, by step ("GET /", "exec redis-cli ping", "run")


class Check(Protocol):
    def observe(self, engine: Engine, image: str) -> Observation: ...

    def problems(self, observation: Observation) -> list[str]:
        """Steps where the original misbehaved: then "same as the original" would mean nothing."""
        ...


@dataclass(frozen=True)
class HttpCheck:
    """GET each path from a server; the status and the sha256 of the body must match."""

    port: int
    paths: tuple[str, ...]
    ignore: tuple[str, ...] = ()  # regexes removed from every body before hashing (timestamps)

    def observe(self, engine: Engine, image: str) -> Observation:
        with _running(engine, ContainerSpec(image=image, publish_tcp=(self.port,))) as container_id:
            host_port = engine.host_port(container_id, self.port)
            if host_port is None:
                return {"start": "exited before its port was published"}
            deadline = time.monotonic() + STARTUP_SECONDS
            return {f"GET {path}": _get(host_port, path, deadline, self.ignore) for path in self.paths}

    def problems(self, observation: Observation) -> list[str]:
        return [f"{step}: {value}" for step, value in observation.items() if not value.startswith("200 ")]


@dataclass(frozen=True)
class ExecCheck:
    """Run commands inside the running server container; exit codes and output must match."""

    commands: tuple[tuple[str, ...], ...]

    def observe(self, engine: Engine, image: str) -> Observation:
        with _running(engine, ContainerSpec(image=image)) as container_id:
            seen = {}
            for number, argv in enumerate(self.commands):
                # The first command also waits for the server to come up.
                seen[f"exec {' '.join(argv)}"] = _exec(engine, container_id, argv, retry=number == 0)
            return seen

    def problems(self, observation: Observation) -> list[str]:
        return [f"{step}: {value}" for step, value in observation.items() if not value.startswith("exit 0:")]


@dataclass(frozen=True)
class BatchCheck:
    """Run the image's own command to completion; exit code and stdout must match."""

    def observe(self, engine: Engine, image: str) -> Observation:
        with _running(engine, ContainerSpec(image=image)) as container_id:
            code = engine.wait(container_id, STARTUP_SECONDS)
            if code is None:
                return {"run": f"still running after {STARTUP_SECONDS:g} s"}
            return {"run": _said(code, engine.stdout(container_id))}

    def problems(self, observation: Observation) -> list[str]:
        return [f"{step}: {value}" for step, value in observation.items() if not value.startswith("exit 0:")]


@dataclass(frozen=True)
class CorpusImage:
    name: str  # the fixture's name (fixtures/images/<name>)
    kind: str
    check: Check
    slim_args: tuple[str, ...] = ()  # probes for `slim build`, as a user would pass them


CORPUS: tuple[CorpusImage, ...] = (
    CorpusImage(
        "nginx", "web server (static site)",
        HttpCheck(80, ("/", "/about.html", "/docs/guide.html", "/style.css", "/logo.png")),
    ),
    CorpusImage(
        "pyapp", "web app (Python, Flask)", HttpCheck(8000, ("/", "/hello", "/items", "/zone")),
        ("--probe-file", str(PROBE_FILES / "pyapp.yaml")),
    ),
    CorpusImage(
        "nodeapp", "web app (Node, Express)",
        HttpCheck(3000, ("/", "/a.html", "/deep/b.html", "/report"), ignore=(REPORT_TIMESTAMP,)),
        ("--probe-file", str(PROBE_FILES / "nodeapp.yaml")),
    ),
    CorpusImage(
        "redis", "key-value server",
        ExecCheck((("redis-cli", "ping"), ("redis-cli", "set", "bench", "42"), ("redis-cli", "get", "bench"))),
        ("--exec", "redis-cli ping"),
    ),
    CorpusImage("jq", "batch CLI (jq)", BatchCheck()),
    CorpusImage("jdkapp", "batch job on a full JDK (> 500 MB)", BatchCheck()),
)
NAMES = tuple(image.name for image in CORPUS)


def compare(check: Check, engine: Engine, original: str, slimmed: str) -> tuple[bool, str]:
    """Observe both images; (same and healthy, one line saying how)."""
    before = check.observe(engine, original)
    problems = check.problems(before)
    if problems:
        return False, f"the original itself misbehaves: {problems[0]}"
    after = check.observe(engine, slimmed)
    differing = [step for step in before if after.get(step) != before[step]]
    if differing:
        step = differing[0]
        return False, f"{step}: original {before[step]}; slimmed {after.get(step)}"
    return True, f"same ({len(before)} check{'s' if len(before) != 1 else ''})"


@contextlib.contextmanager
def _running(engine: Engine, spec: ContainerSpec) -> Iterator[str]:
    container_id = engine.create_container(spec)
    try:
        engine.start(container_id)
        yield container_id
    finally:
        engine.remove_container(container_id)


def _get(host_port: int, path: str, deadline: float, ignore: tuple[str, ...]) -> str:
    """"STATUS sha256:HEX" of GET path, retrying while the server starts (docker-proxy accepts early)."""
    url = f"http://{LOOPBACK}:{host_port}{path}"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT) as response:
                return f"{response.status} sha256:{_digest(response.read(), ignore)}"
        except urllib.error.HTTPError as error:  # the server answered: that is the observation
            return f"{error.code} sha256:{_digest(error.read(), ignore)}"
        except OSError as error:
            if time.monotonic() > deadline:
                return f"no answer ({error})"
            time.sleep(RETRY_INTERVAL)


def _digest(body: bytes, ignore: tuple[str, ...]) -> str:
    for pattern in ignore:
        body = re.sub(pattern.encode(), b"", body)
    return hashlib.sha256(body).hexdigest()[:16]


def _exec(engine: Engine, container_id: str, argv: tuple[str, ...], retry: bool) -> str:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        result = engine.exec(container_id, argv)
        if result.exit_code == 0 or not retry or time.monotonic() > deadline:
            return _said(result.exit_code, result.output)
        time.sleep(RETRY_INTERVAL)


def _said(exit_code: int, output: bytes) -> str:
    text = output.decode("utf-8", "replace").strip()
    digest = hashlib.sha256(output).hexdigest()[:16]
    first = text.splitlines()[0][:60] if text else ""
    return f"exit {exit_code}: {first!r} sha256:{digest}"

