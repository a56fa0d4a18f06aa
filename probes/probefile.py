"""The probe file: HTTP requests, in-container commands and host commands a user declares in YAML.

    http:
      - path: /items
        method: GET            # default GET
        port: 8000             # default: the image's first exposed port
        headers: {Accept: application/json}
        body: "..."            # optional
        expect_status: 200     # default 200
        ignore: ["\\d{2}:\\d{2}:\\d{2}"]   # regexes removed from the body before hashing
    exec:
      - ["redis-cli", "ping"]
    host:
      - "./integration-test.sh"
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from .http import HttpRequest
from .interface import ProbeInputError

SECTIONS = ("http", "exec", "host")
HTTP_KEYS = ("path", "method", "port", "headers", "body", "expect_status", "ignore")
MAX_SIZE = 1 << 20  # bytes: far more than any list of probes


@dataclass(frozen=True)
class ProbeFile:
    http: tuple[HttpRequest, ...] = ()
    exec: tuple[tuple[str, ...], ...] = ()  # argv of commands run in the container
    host: tuple[str, ...] = ()  # shell command lines run on the host

    def requests_for(self, port: int, default_port: int | None) -> tuple[HttpRequest, ...]:
        """The declared requests for container port `port`; those naming no port go to `default_port`."""
        return tuple(request for request in self.http if (request.port or default_port) == port)


def load_probe_file(path: str | Path) -> ProbeFile:
    """Parse and check a probe file; any problem is a ProbeInputError naming the file and the entry."""
    import yaml  # here: 10 ms of every start-up otherwise, for runs that mostly have no probe file

    source = str(path)
    try:
        document = yaml.safe_load(_read_bounded(source))
    except OSError as error:
        raise ProbeInputError(f"{source}: cannot read the probe file: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise ProbeInputError(f"{source}: not UTF-8 text (byte {error.start}: {error.reason})") from error
    except yaml.YAMLError as error:
        raise ProbeInputError(f"{source}: not valid YAML: {_yaml_problem(error)}") from error
    if document is None:  # an empty file declares nothing
        return ProbeFile()
    if not isinstance(document, dict):
        raise ProbeInputError(
            f"{source}: expected a mapping with the sections {', '.join(SECTIONS)}, got {_kind(document)}"
        )
    unknown = sorted(map(str, set(document) - set(SECTIONS)))
    if unknown:
        raise ProbeInputError(f"{source}: unknown section {unknown[0]!r} (known: {', '.join(SECTIONS)})")
    return ProbeFile(
        http=_section(source, document, "http", _http_request),
        exec=_section(source, document, "exec", _command),
        host=_section(source, document, "host", _host_command),
    )


def _read_bounded(source: str) -> str:
    """Only a regular file, and only so much of it: a FIFO would block forever, /dev/zero never ends."""
    # O_NONBLOCK: opening a FIFO no one writes to returns at once instead of waiting for a writer.
    fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ProbeInputError(f"{source}: a probe file must be a regular file")
        data = file.read(MAX_SIZE + 1)
    if len(data) > MAX_SIZE:
        raise ProbeInputError(f"{source}: a probe file may hold at most {MAX_SIZE // 1024} KiB")
    return data.decode("utf-8")


class _EntryError(Exception):
    """What is wrong with one entry; _section adds where it is."""


T = TypeVar("T")


def _section(source: str, document: dict, name: str, parse: Callable[[Any], T]) -> tuple[T, ...]:
    entries = document.get(name)
    if entries is None:  # the section is absent, or its key stands alone
        return ()
    if not isinstance(entries, list):
        raise ProbeInputError(f"{source}: section {name!r} must be a list, got {_kind(entries)}")
    parsed = []
    for index, entry in enumerate(entries):
        try:
            parsed.append(parse(entry))
        except _EntryError as error:
            raise ProbeInputError(f"{source}: {name}[{index}]: {error}") from None
    return tuple(parsed)


def _http_request(entry: Any) -> HttpRequest:
    if not isinstance(entry, dict):
        raise _EntryError(f"expected a mapping with at least a 'path', got {_kind(entry)}")
    unknown = sorted(map(str, set(entry) - set(HTTP_KEYS)))
    if unknown:
        raise _EntryError(f"unknown key {unknown[0]!r} (known: {', '.join(HTTP_KEYS)})")
    if "path" not in entry:
        raise _EntryError("'path' is missing")
    ignore = _field(entry, "ignore", [], _is_list_of(str), "a list of regexes")
    for pattern in ignore:
        try:
            re.compile(pattern)
        except re.error as error:
            raise _EntryError(f"'ignore' pattern {pattern!r} is not a valid regex: {error}") from None
    headers = _field(entry, "headers", {}, _is_headers, "a mapping of header names to values")
    return HttpRequest(
        path=_field(entry, "path", None, _is_path, "a path starting with /"),
        method=_field(entry, "method", "GET", _is_method, "an HTTP method such as GET").upper(),
        port=_field(entry, "port", None, _is_port, "a TCP port number"),
        headers={name: str(value) for name, value in headers.items()},
        body=_field(entry, "body", None, lambda value: isinstance(value, str), "a string"),
        expect_status=_field(entry, "expect_status", 200, _is_status, "a status 100-599"),
        ignore=tuple(ignore),
    )


def _command(entry: Any) -> tuple[str, ...]:
    if not (entry and _is_list_of(str)(entry)):
        raise _EntryError(f'expected a command as a list of strings, like ["redis-cli", "ping"], got {entry!r}')
    return tuple(entry)


def _host_command(entry: Any) -> str:
    if not (isinstance(entry, str) and entry.strip()):
        raise _EntryError(f"expected a shell command line as a string, got {entry!r}")
    return entry


def _field(entry: dict, key: str, default: Any, valid: Callable[[Any], bool], what: str) -> Any:
    if key not in entry:
        return default
    if not valid(entry[key]):
        raise _EntryError(f"{key!r} must be {what}, got {entry[key]!r}")
    return entry[key]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # YAML's `yes` is a bool, not a port


def _is_path(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("/")


def _is_port(value: Any) -> bool:
    return _is_int(value) and 0 < value < 65536


def _is_status(value: Any) -> bool:
    return _is_int(value) and 100 <= value <= 599


def _is_method(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[A-Za-z]+", value) is not None


def _is_headers(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(name, str) and (isinstance(text, (str, float)) or _is_int(text)) for name, text in value.items()
    )


def _is_list_of(kind: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(isinstance(item, kind) for item in value)


def _yaml_problem(error: Exception) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    return f"{problem} at line {mark.line + 1}" if mark else problem


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    names = {dict: "a mapping", list: "a list", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), "nothing" if value is None else type(value).__name__)
