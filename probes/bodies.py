"""The parts of a response body that stay comparable when the body as a whole differs from run to run.

A status page that shows the time differs on every request, yet its document structure does not; a JSON
answer with an uptime keeps its keys and most of its values. Each part is a short digest, so two runs can
be compared part by part without keeping bodies around.
"""
from __future__ import annotations

import hashlib
import json
from itertools import islice
from typing import Any, Iterator

JSON_VALUES_LIMIT = 2000  # values digested per JSON body at most (the keys are always all)

CONTENT_TYPE = "type"
HTML_STRUCTURE = "html structure"
JSON_KEYS = "json keys"
JSON_VALUE = "json /"  # how the part of one value begins: "json /items/0/name"


def body_parts(media_type: str, body: bytes, complete: bool, html_structure: str | None) -> dict[str, str]:
    """The content type, and the HTML structure or the JSON keys and values of a whole body."""
    parts = {CONTENT_TYPE: media_type}
    if html_structure is not None:
        parts[HTML_STRUCTURE] = html_structure
    elif complete and is_json(media_type):
        try:
            document = json.loads(body)
        except ValueError:  # says JSON, is not: the content type is all there is to compare
            return parts
        leaves = list(_leaves(document, ""))
        parts[JSON_KEYS] = digest("\n".join(path for path, _ in leaves))
        parts.update((f"json {path}", digest(value)) for path, value in islice(leaves, JSON_VALUES_LIMIT))
    return parts


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(JSON pointer, value as JSON) of every scalar, empty object and empty list, in document order."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, f"{path}/{key}")
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}/{index}")
    else:
        yield path or "/", json.dumps(value, sort_keys=True)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe_parts(names: list[str]) -> str:
    """"content type, JSON keys and 3 values" for the names of the parts compared."""
    words = []
    if CONTENT_TYPE in names:
        words.append("content type")
    if HTML_STRUCTURE in names:
        words.append("HTML structure")
    if JSON_KEYS in names:
        words.append("JSON keys")
    values = sum(1 for name in names if name.startswith(JSON_VALUE))
    if values:
        words.append(f"{values} JSON value{'s' if values > 1 else ''}")
    return ", ".join(words)


def part_words(name: str) -> str:
    """A part's name for people: "content type", "JSON value /items/0/name"."""
    words = {CONTENT_TYPE: "content type", HTML_STRUCTURE: "HTML structure", JSON_KEYS: "JSON keys"}
    return words.get(name) or f"JSON value {name.removeprefix('json ')}"
