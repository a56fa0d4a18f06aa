"""Dockerfile steps as an image's history records them (`created_by`), read back as the line people wrote.

The classic builder writes a non-RUN step as `/bin/sh -c #(nop) COPY ...` and a RUN step as `/bin/sh -c CMD`,
both after `|N ARG=... ` when build arguments were set; BuildKit writes the instruction itself and ends it
with `# buildkit`.
"""
from __future__ import annotations

import re

_CLASSIC_NOP = re.compile(r"^(?:\|\d+ .*?)?/bin/sh -c #\(nop\)\s*")
_CLASSIC_RUN = re.compile(r"^(?:\|\d+ .*?)?/bin/sh -c\s+")
_BUILDKIT_MARK = re.compile(r"\s*# buildkit$")


def step_text(created_by: str) -> str:
    """The step without the builders' marks: "COPY dir:... in /app", "apt-get install ..." (a classic RUN
    keeps its shell), "" for a layer no step made."""
    return _CLASSIC_NOP.sub("", _BUILDKIT_MARK.sub("", created_by.strip()))


def dockerfile_line(created_by: str) -> str:
    """The step as a Dockerfile line: a classic RUN step gets its `RUN` back."""
    text = _CLASSIC_NOP.sub("", created_by)
    return text if text != created_by else _CLASSIC_RUN.sub("RUN ", created_by)
