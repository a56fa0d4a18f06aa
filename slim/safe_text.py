"""Text from an image, a container or a user's file is data, never markup or terminal commands.

File names, library names, `#!` lines and container output reach the console, markdown and HTML. Control
characters (ESC starts CSI and OSC sequences: colours, the terminal's title, hyperlinks) are shown
escaped, and so are bytes that are not UTF-8 (a file name read with surrogateescape), which also keeps
every output encodable.
"""
from __future__ import annotations

import re

from rich.markup import escape as escape_markup

# C0 controls but tab and newline, DEL, and C1 controls (0x9b is a one-character CSI).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NEWLINES = re.compile(r"[\n\t]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_UNDECODABLE = range(0xDC80, 0xDD00)  # where surrogateescape puts the bytes 0x80-0xff


def printable(text: str, *, one_line: bool = False) -> str:
    """`text` with control characters and undecodable bytes written as escapes (\\x1b, \\xff); with
    one_line, newlines and tabs too (a newline in a file name must not end a table row)."""
    text = _SURROGATES.sub(_escape_surrogate, text)
    text = _CONTROLS.sub(_escape_control, text)
    return _NEWLINES.sub(_escape_control, text) if one_line else text


def console(text: str) -> str:
    """For rich's console: one printable line in which `[bold]` is text, not markup."""
    return escape_markup(printable(str(text), one_line=True))


def _escape_control(match: re.Match) -> str:
    return repr(match[0])[1:-1] if match[0] in "\n\t" else f"\\x{ord(match[0]):02x}"


def _escape_surrogate(match: re.Match) -> str:
    code = ord(match[0])
    return f"\\x{code - 0xDC00:02x}" if code in _UNDECODABLE else f"\\u{code:04x}"
