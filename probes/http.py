"""An HTTP(S) server in the container: wait until it answers, crawl its pages, send the declared requests.

The fingerprint maps each request ("GET /a.html") to the status and the sha256 of the body, so two runs
of a correct image give equal fingerprints; headers (Date, Server, ...) are left out on purpose.
"""
from __future__ import annotations

import functools
import hashlib
import http.client
import math
import re
import socket
import ssl
import time
from collections import Counter, deque
from dataclasses import KW_ONLY, dataclass, field
from html.parser import HTMLParser
from itertools import chain
from typing import Iterator, Mapping
from urllib.parse import urljoin, urlsplit

from slim.model import ProbeOutcome

from .base import Target

REQUEST_TIMEOUT = 10.0  # seconds for one request, answer and body included
# Seconds for a TLS handshake when detecting TLS: a TLS server answers a ClientHello at once, while a server
# of another protocol (redis) may wait silently for the rest of a "command" until the request times out.
TLS_HANDSHAKE_TIMEOUT = 3.0
RETRY_INTERVAL = 0.2  # seconds between readiness attempts
CHUNK = 64 * 1024
HTML_LIMIT = 2 * 1024 * 1024  # links are looked for in the first bytes of a page only
HTML_TYPES = ("text/html", "application/xhtml+xml")
DEFAULT_PORTS = {"http": 80, "https": 443}

# What a request can fail with: no connection, a reset, a timeout, a TLS failure (all OSError), or an
# answer that is not HTTP (HTTPException).
NO_ANSWER = (OSError, http.client.HTTPException)


@dataclass(frozen=True)
class HttpRequest:
    """One request: declared by the user in a probe file, or a crawled page (expect_status None)."""

    path: str
    method: str = "GET"
    port: int | None = None  # None: the image's first exposed port
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    expect_status: int | None = 200  # None: anything but a server error (5xx), as for crawled pages
    ignore: tuple[str, ...] = ()  # regexes removed from the body before hashing (dates, ids)


@dataclass(frozen=True)
class Origin:
    scheme: str  # "http" or "https"
    host: str
    port: int

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def path_of(self, url: str) -> str | None:
        """The normalised path and query of `url` if it belongs to this origin, else None."""
        parts = urlsplit(url)
        try:
            port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        except ValueError:  # a port that is not a number
            return None
        if (parts.scheme, parts.hostname, port) != (self.scheme, self.host, self.port):
            return None
        path = urlsplit(urljoin(url, parts.path or "/")).path  # joining removes dot segments
        return f"{path}?{parts.query}" if parts.query else path

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=unverified_tls())
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


@functools.cache
def unverified_tls() -> ssl.SSLContext:
    # The user's own container, usually with a self-signed certificate: we test it, we do not trust it.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def handshake(host: str, port: int, deadline: float) -> None:
    """A TLS handshake with the server, nothing sent after it; raises OSError (TimeoutError) if none."""
    timeout = deadline - time.monotonic()
    if timeout <= 0:
        raise TimeoutError("probe budget used up")
    with socket.create_connection((host, port), timeout=timeout) as plain:
        plain.settimeout(max(0.001, deadline - time.monotonic()))
        with unverified_tls().wrap_socket(plain, server_hostname=host):
            pass


class _LinkParser(HTMLParser):
    def __init__(self, page_url: str):
        super().__init__(convert_charrefs=True)
        self.base = page_url
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name not in ("href", "src") or not value or not value.strip():
                continue
            if tag == "base":
                self.base = urljoin(self.base, value.strip())
            else:
                self.links.append(urljoin(self.base, value.strip()))


def page_links(html: str, page_url: str) -> list[str]:
    """Absolute URLs of the href and src attributes of a page, in document order, fragments dropped.

    Relative links resolve against the page (or its <base href>), dot segments removed. mailto:,
    javascript:, data: and links to other hosts come back too: Origin.path_of filters them.
    """
    parser = _LinkParser(page_url)
    parser.feed(html)
    parser.close()
    return [url.partition("#")[0] for url in parser.links]


def without_ignored(body: bytes, ignore: tuple[str, ...]) -> bytes:
    """The body with every match of the `ignore` regexes removed."""
    # surrogateescape keeps bytes that are not UTF-8 as they are, so only the matches change.
    text = body.decode("utf-8", "surrogateescape")
    for pattern in ignore:
        text = re.sub(pattern, "", text)
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Answer:
    url: str
    status: int
    sha256: str
    head: bytes  # the first HTML_LIMIT bytes of the body (after the ignore regexes)
    content_type: str
    location: str | None  # Location header of a redirect

    def links(self) -> list[str]:
        """Where this answer leads: the links of an HTML page, and a redirect's target."""
        found = [urljoin(self.url, self.location)] if self.location else []
        if self.content_type.split(";")[0].strip().lower() in HTML_TYPES:
            found += page_links(self.head.decode("utf-8", "replace"), self.url)
        return found


def fetch(origin: Origin, request: HttpRequest, deadline: float = math.inf) -> Answer:
    """One request on a fresh connection, bounded by REQUEST_TIMEOUT and `deadline` (monotonic).

    Raises one of NO_ANSWER when no HTTP answer came back.
    """
    deadline = min(deadline, time.monotonic() + REQUEST_TIMEOUT)
    if deadline <= time.monotonic():
        raise TimeoutError("probe budget used up")
    connection = origin.connection(timeout=deadline - time.monotonic())
    try:
        body = request.body.encode() if request.body is not None else None
        connection.request(request.method, request.path, body=body, headers=dict(request.headers))
        response = connection.getresponse()
        sha256, head = _digest(_chunks(response, deadline), request.ignore)
        return Answer(
            url=origin.url(request.path),
            status=response.status,
            sha256=sha256,
            head=head,
            content_type=response.getheader("Content-Type", ""),
            location=response.getheader("Location"),
        )
    finally:
        connection.close()


def _chunks(response: http.client.HTTPResponse, deadline: float) -> Iterator[bytes]:
    while chunk := response.read(CHUNK):
        if time.monotonic() > deadline:
            raise TimeoutError("timed out reading the body")
        yield chunk


def _digest(chunks: Iterator[bytes], ignore: tuple[str, ...]) -> tuple[str, bytes]:
    """sha256 of the body and its first HTML_LIMIT bytes, streamed unless regexes must see it whole."""
    if ignore:
        chunks = iter([without_ignored(b"".join(chunks), ignore)])
    digest = hashlib.sha256()
    head = bytearray()
    for chunk in chunks:
        digest.update(chunk)
        head += chunk[: max(0, HTML_LIMIT - len(head))]
    return digest.hexdigest(), bytes(head)


def describe(error: BaseException) -> str:
    """A few words on why a request got no answer."""
    # RemoteDisconnected is both a ConnectionResetError and a BadStatusLine: test it first.
    if isinstance(error, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, http.client.BadStatusLine):
        return "the answer is not HTTP"
    if isinstance(error, TimeoutError):
        return str(error) or "timed out"
    return str(error) or type(error).__name__


class NotReady(Exception):
    """The port never answered HTTP; the message says why."""


class NotHttp(Exception):
    """The port listens in the container but what answers there is not HTTP."""


# The fingerprint of a port that listens but does not speak HTTP: the slimmed image must do the same.
NOT_HTTP = {"listening": True, "http": False}


@dataclass(frozen=True)
class Visit:
    """One request of the probe and what came of it."""

    key: str  # "GET /a.html"
    status: int | None  # None: no answer
    sha256: str | None
    failure: str | None = None  # why this visit fails the probe


@dataclass(frozen=True)
class HttpProbe:
    port: int  # in the container
    _: KW_ONLY
    paths: tuple[str, ...] = ("/",)  # where the crawl starts
    crawl_depth: int = 2  # links followed from a start path; pages this deep are fetched, not parsed
    page_budget: int = 50  # crawled URLs at most (declared requests come on top)
    ready_timeout: float = 30.0
    tls: bool | None = None  # None: detect
    requests: tuple[HttpRequest, ...] = ()
    # The user asked for HTTP on this port (--http-port, probe-file requests). A default probe of an exposed
    # port accepts a server that listens but speaks another protocol (redis, postgres): "listening, not HTTP".
    require_http: bool = False

    @property
    def name(self) -> str:
        return f"http :{self.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    def run(self, target: Target) -> ProbeOutcome:
        if self.port not in target.ports:
            return ProbeOutcome(self.name, False, f"port {self.port} is not published (has the container stopped?)")
        try:
            origin = self._origin(target)
        except NotReady as error:
            return ProbeOutcome(self.name, False, str(error))
        except NotHttp as error:
            if self.require_http:
                return ProbeOutcome(self.name, False, str(error), dict(NOT_HTTP))
            return ProbeOutcome(self.name, True, "listening, not HTTP", dict(NOT_HTTP))
        visits = []
        declared = (_visit(origin, request, target.deadline)[0] for request in self.requests)
        for visit in chain(self._crawl(origin, target.deadline), declared):
            visits.append(visit)
            if visit.status is None:  # the server stopped answering: the rest would only time out
                break
        return _outcome(self.name, visits)

    def _origin(self, target: Target) -> Origin:
        """Where to send requests. When the wait for the container's ports watched its sockets, one exchange
        tells whether a listening port speaks HTTP (raises NotHttp if not); else wait for an answer."""
        readiness = target.readiness
        if readiness is None or not readiness.observed or self.port not in readiness.ports:
            return self.await_ready(target)
        if why := readiness.why_not(self.port):
            raise NotReady(why)
        deadline = min(time.monotonic() + self.ready_timeout, target.deadline)
        answered = self._answering_origin(target.host, target.ports[self.port], deadline)
        if isinstance(answered, Origin):
            return answered
        raise NotHttp(f"port {self.port} listens but does not answer HTTP ({describe(answered)})")

    def await_ready(self, target: Target) -> Origin:
        """The origin serving on the port once a whole HTTP exchange succeeds; raises NotReady.

        Connecting is not enough: docker-proxy accepts on the published port before anything listens
        in the container, then closes the connection.
        """
        host_port = target.ports[self.port]
        deadline = min(time.monotonic() + self.ready_timeout, target.deadline)
        while True:
            answered = self._answering_origin(target.host, host_port, deadline)
            if isinstance(answered, Origin):
                return answered
            if not target.engine.is_running(target.container_id):
                code = target.engine.wait(target.container_id, 0)
                raise NotReady(f"container exited (code {code}) before port {self.port} answered")
            if time.monotonic() + RETRY_INTERVAL > deadline:
                raise NotReady(
                    f"port {self.port} did not answer HTTP within {self.ready_timeout:g} s ({describe(answered)})"
                )
            time.sleep(RETRY_INTERVAL)

    def _answering_origin(self, host: str, port: int, deadline: float) -> Origin | BaseException:
        """The origin whose scheme got a whole answer to `GET /`, else why the first scheme got none."""
        schemes = {None: ("http", "https"), False: ("http",), True: ("https",)}[self.tls]
        first_error = None
        for scheme in schemes:
            origin = Origin(scheme, host, port)
            try:
                if scheme == "https" and self.tls is None:
                    handshake(host, port, min(deadline, time.monotonic() + TLS_HANDSHAKE_TIMEOUT))
                fetch(origin, HttpRequest("/"), deadline)
                return origin
            except NO_ANSWER as error:
                first_error = first_error or error
                if isinstance(error, (ConnectionRefusedError, TimeoutError)):
                    break  # nothing answered at all: trying TLS would not tell more
        return first_error

    def _crawl(self, origin: Origin, deadline: float) -> Iterator[Visit]:
        """GET the start paths, then the same-origin pages they link to, breadth first."""
        queue = deque((path, 0) for path in dict.fromkeys(self.paths))
        seen = set(self.paths)
        for _ in range(self.page_budget):
            if not queue:
                return
            path, depth = queue.popleft()
            visit, answer = _visit(origin, HttpRequest(path, expect_status=None), deadline)
            yield visit
            if answer and depth < self.crawl_depth:
                for link in filter(None, map(origin.path_of, answer.links())):
                    if link not in seen:
                        seen.add(link)
                        queue.append((link, depth + 1))


def _visit(origin: Origin, request: HttpRequest, deadline: float) -> tuple[Visit, Answer | None]:
    key = f"{request.method} {request.path}"
    try:
        answer = fetch(origin, request, deadline)
    except NO_ANSWER as error:
        return Visit(key, None, None, f"{key}: no answer ({describe(error)})"), None
    complaint = _complaint(request.expect_status, answer.status)
    return Visit(key, answer.status, answer.sha256, complaint and f"{key}: {complaint}"), answer


def _complaint(expected: int | None, status: int) -> str | None:
    if expected is None:
        return f"status {status}" if status >= 500 else None
    return f"status {status}, expected {expected}" if status != expected else None


def _outcome(name: str, visits: list[Visit]) -> ProbeOutcome:
    fingerprint: dict[str, dict] = {}
    for visit in visits:
        key, copy = visit.key, 1
        while key in fingerprint:  # the same request declared twice, or declared and crawled
            copy += 1
            key = f"{visit.key} #{copy}"
        fingerprint[key] = {"status": visit.status, "sha256": visit.sha256}
    failures = [visit.failure for visit in visits if visit.failure]
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        return ProbeOutcome(name, False, failures[0] + more, fingerprint)
    return ProbeOutcome(name, True, _status_summary(visits), fingerprint)


def _status_summary(visits: list[Visit]) -> str:
    """"3 URLs, all 200" or "4 URLs: 200 x3, 404 x1"."""
    counts = Counter(visit.status for visit in visits)
    if len(counts) == 1:
        return f"{len(visits)} URLs, all {next(iter(counts))}"
    return f"{len(visits)} URLs: " + ", ".join(f"{status} x{n}" for status, n in sorted(counts.items()))
