"""What a browser loads from a page or a stylesheet: the URLs a crawl follows, and a page's structure.

Pages are read with the standard library's HTML parser (the tokenizer of the HTML spec, forgiving as
browsers are), stylesheets with tinycss2's CSS tokenizer. URLs resolve as a browser resolves them: against
the page's `<base href>` when it has one (wherever it stands in the head), else against the page's URL;
a stylesheet's own URLs against the stylesheet.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Iterable, Iterator
from urllib.parse import urljoin

import tinycss2

# Attributes holding one URL a browser fetches to render the page, by element.
RESOURCE_ATTRIBUTES = {
    "link": ("href",),  # stylesheets, icons, manifests, preloads
    "script": ("src",),
    "img": ("src",),
    "source": ("src",),
    "iframe": ("src",),
    "embed": ("src",),
    "audio": ("src",),
    "video": ("src", "poster"),
    "track": ("src",),
    "input": ("src",),  # <input type=image>
}
SRCSET_ELEMENTS = ("img", "source")


@dataclass(frozen=True)
class Link:
    url: str  # absolute, fragment removed
    navigates: bool  # a page a user goes to (a href, a GET form); False: something the page itself loads


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.found: list[tuple[str, bool]] = []  # (URL as written, navigates)
        self.inline_css: list[str] = []
        self.structure = hashlib.sha256()
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: (value or "").strip() for name, value in attrs}
        self.structure.update(f"<{tag} {sorted(values.items())}>".encode())
        if tag == "base" and values.get("href") and self.base is None:  # the first <base href> counts
            self.base = values["href"]
        elif tag in ("a", "area") and values.get("href"):
            self.found.append((values["href"], True))
        elif tag == "form" and values.get("action") and values.get("method", "get").lower() == "get":
            self.found.append((values["action"], True))
        for name in RESOURCE_ATTRIBUTES.get(tag, ()):
            if values.get(name):
                self.found.append((values[name], False))
        if tag in SRCSET_ELEMENTS and values.get("srcset"):
            self.found += [(url, False) for url in srcset_urls(values["srcset"])]
        if values.get("style"):
            self.inline_css.append(values["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self.structure.update(f"</{tag}>".encode())
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.inline_css.append(data)


@dataclass(frozen=True)
class Page:
    links: tuple[Link, ...]
    structure: str  # sha256 of the elements and their attributes in document order, text left out


def read_page(html: str, page_url: str) -> Page:
    """The links of a page in document order (inline CSS last) and the digest of its structure.

    mailto:, javascript:, data: and other hosts' URLs come back too: the crawl keeps its own origin's.
    """
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    links = [Link(_absolute(base, url), navigates) for url, navigates in parser.found]
    links += [Link(_absolute(base, url), False) for css in parser.inline_css for url in css_urls(css)]
    return Page(tuple(links), parser.structure.hexdigest())


def stylesheet_links(css: str, stylesheet_url: str) -> tuple[Link, ...]:
    """What a stylesheet makes the browser load: `@import`s, images and fonts of `url(...)`."""
    return tuple(Link(_absolute(stylesheet_url, url), False) for url in css_urls(css))


def css_urls(css: str) -> list[str]:
    """The URLs of `url(...)` (quoted or not) and `@import "..."` in CSS text, in order."""
    return list(_urls(tinycss2.parse_component_value_list(css, skip_comments=True)))


def _urls(tokens: Iterable) -> Iterator[str]:
    importing = False
    for token in tokens:
        if token.type == "whitespace":
            continue
        if token.type == "url":
            yield token.value
        elif token.type == "function" and token.lower_name == "url":
            yield from (argument.value for argument in token.arguments if argument.type == "string")
            continue
        elif token.type == "string" and importing:
            yield token.value
        importing = token.type == "at-keyword" and token.lower_value == "import"
        # Blocks ({...}, (...), [...]) and functions (image-set(...)) hold tokens of their own.
        yield from _urls(getattr(token, "content", None) or getattr(token, "arguments", None) or ())


def srcset_urls(srcset: str) -> list[str]:
    """The image URLs of a srcset: comma-separated candidates, each a URL and an optional descriptor."""
    return [candidate.split()[0] for candidate in srcset.split(",") if candidate.strip()]


def _absolute(base: str, url: str) -> str:
    return urljoin(base, url).partition("#")[0]
