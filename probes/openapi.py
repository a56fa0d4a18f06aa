"""Probes from an API description: one request per operation of an OpenAPI 3 or Swagger 2 document.

prance reads the document (JSON or YAML, a file or a URL), resolves its `$ref`s and validates it. Each
operation becomes one request: its path under the API's base path (OpenAPI 3 `servers`, Swagger 2
`basePath`) with the required parameters filled from the document's examples (else defaults, enums, or
the smallest value the schema allows), and the documented responses as the expected statuses.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import quote, urlencode, urlsplit

import prance

from .http import HttpRequest
from .interface import ProbeInputError

DEFAULT_METHODS = ("GET", "HEAD")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Statuses a `default` response (anything the operation may answer) allows: every one but a server error.
ANY_BUT_SERVER_ERRORS = frozenset(range(100, 500))


def load_openapi(source: str, methods: tuple[str, ...] = DEFAULT_METHODS) -> tuple[HttpRequest, ...]:
    """The requests for every operation of `methods` the document at `source` (a path or a URL) describes."""
    remote = urlsplit(source).scheme in ("http", "https")
    if not remote and not Path(source).is_file():
        raise ProbeInputError(f"--openapi {source}: cannot read it: no such file")
    location = source if remote else str(Path(source).resolve())
    try:
        document = prance.ResolvingParser(location, backend="openapi-spec-validator", lazy=False).specification
    except (prance.ValidationError, prance.util.url.ResolutionError) as error:
        raise ProbeInputError(f"--openapi {source}: not a valid OpenAPI or Swagger document: {_first_line(error)}") from error
    except (OSError, ValueError) as error:  # unreadable, not JSON or YAML, not fetched
        raise ProbeInputError(f"--openapi {source}: cannot read it: {_first_line(error)}") from error
    return tuple(_requests(document, {method.lower() for method in methods}))


def _requests(document: Mapping[str, Any], methods: set[str]) -> Iterator[HttpRequest]:
    prefix = _base_path(document).rstrip("/")
    for template, item in (document.get("paths") or {}).items():
        shared = item.get("parameters") or []
        for method, operation in item.items():
            if method not in methods or not isinstance(operation, Mapping):
                continue
            parameters = _merged(shared, operation.get("parameters") or [])
            yield HttpRequest(
                path=prefix + _filled(template, parameters),
                method=method.upper(),
                headers={p["name"]: str(_value(p)) for p in parameters if p.get("in") == "header" and p.get("required")},
                body=_body(operation, parameters),
                expect_status=_documented_statuses(operation.get("responses") or {}),
            )


def _base_path(document: Mapping[str, Any]) -> str:
    if "swagger" in document:
        return document.get("basePath") or ""
    servers = document.get("servers") or [{}]
    url = servers[0].get("url", "")
    for name, variable in (servers[0].get("variables") or {}).items():
        url = url.replace("{" + name + "}", str(variable.get("default", "")))
    return urlsplit(url).path


def _merged(shared: list, own: list) -> list[Mapping[str, Any]]:
    """Path-level parameters, overridden by the operation's own of the same name and location."""
    merged = {(p.get("name"), p.get("in")): p for p in [*shared, *own]}
    return list(merged.values())


def _filled(template: str, parameters: list[Mapping[str, Any]]) -> str:
    path = template
    query = {}
    for parameter in parameters:
        where, name = parameter.get("in"), parameter.get("name", "")
        if where == "path":
            path = path.replace("{" + name + "}", quote(str(_value(parameter)), safe=""))
        elif where == "query" and parameter.get("required"):
            query[name] = _text(_value(parameter))
    return f"{path}?{urlencode(query)}" if query else path


def _body(operation: Mapping[str, Any], parameters: list[Mapping[str, Any]]) -> str | None:
    """A JSON body for an operation that requires one (OpenAPI 3 requestBody, Swagger 2 `in: body`)."""
    request_body = operation.get("requestBody") or {}
    media = (request_body.get("content") or {}).get("application/json")
    if request_body.get("required") and media is not None:
        return json.dumps(_example(media) if _has_example(media) else _minimal(media.get("schema") or {}))
    body = next((p for p in parameters if p.get("in") == "body" and p.get("required")), None)
    return json.dumps(_minimal(body.get("schema") or {})) if body is not None else None


def _value(parameter: Mapping[str, Any]) -> Any:
    """The parameter's example, else what its schema suggests (Swagger 2 puts the schema's keys inline)."""
    if _has_example(parameter):
        return _example(parameter)
    return _minimal(parameter.get("schema") or parameter)


def _has_example(holder: Mapping[str, Any]) -> bool:
    return "example" in holder or bool(holder.get("examples"))


def _example(holder: Mapping[str, Any]) -> Any:
    if "example" in holder:
        return holder["example"]
    first = next(iter(holder["examples"].values()))
    return first.get("value") if isinstance(first, Mapping) else first


def _minimal(schema: Mapping[str, Any]) -> Any:
    """The simplest value `schema` accepts: its example, default or first enum value, else the smallest
    of its type (numbers from their minimum, strings of their minimum length, required properties only)."""
    for key in ("example", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type") or ("object" if "properties" in schema else "string")
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    if kind == "array":
        return [_minimal(schema.get("items") or {})] * min(1, schema.get("minItems", 0) or 0)
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _minimal(properties.get(name) or {}) for name in schema.get("required") or []}
    return "1" * max(1, schema.get("minLength", 1))


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _documented_statuses(responses: Mapping[str, Any]) -> frozenset[int]:
    """The statuses the document says the operation answers ("2XX" ranges included; `default`: any but 5xx)."""
    statuses: set[int] = set()
    for code in map(str, responses):
        if code == "default":
            statuses |= ANY_BUT_SERVER_ERRORS
        elif code.isdigit():
            statuses.add(int(code))
        elif len(code) == 3 and code[0].isdigit() and code[1:].upper() == "XX":
            statuses |= set(range(int(code[0]) * 100, int(code[0]) * 100 + 100))
    return frozenset(statuses) or ANY_BUT_SERVER_ERRORS


def _first_line(error: BaseException) -> str:
    # prance's errors carry their validator's arguments (the message, then the schema it broke): the
    # first text among them is the message.
    message = next((argument for argument in error.args if isinstance(argument, str)), str(error))
    lines = message.strip().splitlines()
    return lines[0] if lines else type(error).__name__
