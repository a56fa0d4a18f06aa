"""An HTTP(S) server in the container: wait until it answers, crawl what a browser loads, send the declared
requests.

The fingerprint maps each request ("GET /a.html") to the status and the sha256 of the body, so two runs
of a correct image give equal fingerprints; headers (Date, Server, ...) are left out on purpose. The parts
of each body (content type, HTML structure, JSON keys and values) are kept too, for a body that differs
between two runs of the original (slim/build/volatility.py).
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
from itertools import chain
from typing import Iterator, Mapping
from urllib.parse import urljoin, urlsplit

from .base import Target
from .bodies import body_parts
from .interface import ProbeOutcome
from .links import Link, Page, read_page, stylesheet_links

REQUEST_TIMEOUT = 10.0  # seconds for one request, answer and body included
# Seconds for a TLS handshake when detecting TLS: a TLS server answers a ClientHello at once, while a server
# of another protocol (redis) may wait silently for the rest of a "command" until the request times out.
TLS_HANDSHAKE_TIMEOUT = 3.0
# Before that attempt, a bare request on a connection of its own: a server of a plain-text protocol answers it at
# once with a line that is neither HTTP nor TLS (redis: "-ERR ..."), and the port is then known to be neither.
# No Host header: redis closes the connection on one without answering (its guard against cross-protocol
# requests), which is all the full request of the HTTP attempt got back.
BARE_REQUEST = b"GET / HTTP/1.0\r\n\r\n"
PLAIN_ANSWER_TIMEOUT = 0.5  # seconds for the first line of that answer
RETRY_INTERVAL = 0.2  # seconds between readiness attempts
CHUNK = 64 * 1024
HTML_LIMIT = 2 * 1024 * 1024  # links and parts are looked for in the first bytes of a body only
HTML_TYPES = ("text/html", "application/xhtml+xml")
CSS_TYPE = "text/css"
# Answers that mean "not ready yet" while an application warms up: a proxy whose backend does not listen
# yet (502), a readiness gate (503), a backend that is still too slow (504).
WARMUP_STATUSES = (502, 503, 504)
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
    # None: anything but a server error (5xx), as for crawled pages; a set: any of these (an API description's
    # documented responses)
    expect_status: int | frozenset[int] | None = 200
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


def answers_in_plain_text(host: str, port: int, deadline: float) -> bool:
    """Whether the port answers BARE_REQUEST with a line of printable text that is not an HTTP status line:
    a TLS server never does (its alerts are binary; a TLS server that explains itself answers in HTTP)."""
    timeout = min(deadline, time.monotonic() + PLAIN_ANSWER_TIMEOUT) - time.monotonic()
    if timeout <= 0:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout) as plain, plain.makefile("rb") as answer:
            plain.sendall(BARE_REQUEST)
            line = answer.readline(256).rstrip(b"\r\n")
    except OSError:
        return False
    return line.isascii() and line.decode().isprintable() and bool(line) and not line.startswith(b"HTTP/")


def page_links(html: str, page_url: str) -> list[str]:
    """Absolute URLs of what a page links to and loads, in document order, fragments dropped."""
    return [link.url for link in read_page(html, page_url).links]


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
    size: int = 0  # bytes of the body (after the ignore regexes)

    @property
    def media_type(self) -> str:
        return self.content_type.split(";")[0].strip().lower()

    @functools.cached_property
    def page(self) -> Page | None:
        if self.media_type not in HTML_TYPES:
            return None
        return read_page(self.head.decode("utf-8", "replace"), self.url)

    def links(self) -> list[Link]:
        """What this answer makes a browser load or offers to go to: a redirect's target, the links of an
        HTML page, the imports and url()s of a stylesheet."""
        found = [Link(urljoin(self.url, self.location), navigates=False)] if self.location else []
        if self.page is not None:
            found += self.page.links
        elif self.media_type == CSS_TYPE:
            found += stylesheet_links(self.head.decode("utf-8", "replace"), self.url)
        return found

    def parts(self) -> dict[str, str]:
        structure = self.page.structure if self.page is not None else None
        return body_parts(self.media_type, self.head, self.size <= len(self.head), structure)


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
        sha256, head, size = _digest(_chunks(response, deadline), request.ignore)
        return Answer(
            url=origin.url(request.path),
            status=response.status,
            sha256=sha256,
            head=head,
            content_type=response.getheader("Content-Type", ""),
            location=response.getheader("Location"),
            size=size,
        )
    finally:
        connection.close()


def _chunks(response: http.client.HTTPResponse, deadline: float) -> Iterator[bytes]:
    while chunk := response.read(CHUNK):
        if time.monotonic() > deadline:
            raise TimeoutError("timed out reading the body")
        yield chunk


def _digest(chunks: Iterator[bytes], ignore: tuple[str, ...]) -> tuple[str, bytes, int]:
    """sha256 of the body, its first HTML_LIMIT bytes and its size, streamed unless regexes must see it whole."""
    if ignore:
        chunks = iter([without_ignored(b"".join(chunks), ignore)])
    digest = hashlib.sha256()
    head = bytearray()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        head += chunk[: max(0, HTML_LIMIT - len(head))]
        size += len(chunk)
    return digest.hexdigest(), bytes(head), size


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
    parts: Mapping[str, str] = field(default_factory=dict)  # digests of the body's parts (probes/bodies.py)


@dataclass(frozen=True)
class HttpProbe:
    port: int  # in the container
    _: KW_ONLY
    paths: tuple[str, ...] = ("/",)  # where the crawl starts
    # Links a user follows (a href, GET forms) from a start path; what a page loads (scripts, stylesheets,
    # images, frames, and what stylesheets import) is fetched at the page's own depth.
    crawl_depth: int = 2
    page_budget: int = 100  # crawled URLs at most (declared requests come on top)
    byte_budget: int = 50 * 1024 * 1024  # crawled body bytes at most
    crawl_seconds: float = 60.0  # the crawl stops starting requests after this long
    ready_timeout: float = 30.0  # also the warm-up: how long "not ready yet" answers are retried
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
        # When sockets of the original's run never listened, the ready timeout is spent: no warm-up on top.
        spent = target.readiness is not None and bool(target.readiness.sockets_missing)
        session = _Session(origin, target.deadline, warmup=0.0 if spent else self.ready_timeout)
        crawl = _Crawl(self, session)
        visits = []
        declared = (session.visit(request)[0] for request in self.requests)
        for visit in chain(crawl.visits(), declared):
            visits.append(visit)
            if visit.status is None:  # the server stopped answering: the rest would only time out
                break
        return _outcome(self.name, visits, crawl.summary(), session.warmup_summary())

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
            if scheme == "https" and self.tls is None and answers_in_plain_text(host, port, deadline):
                break  # a plain-text protocol (redis): the TLS attempt would only wait out its timeout
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



class _Session:
    """The requests of one probe run. During the warm-up (from the first request on, `warmup` seconds at
    most) an answer that means "not ready yet" (refused, reset, 502, 503, 504) is retried, never taken as
    the application's answer: a proxy answers before its backend listens, a server before its data loads."""

    def __init__(self, origin: Origin, deadline: float, warmup: float):
        self.origin, self.deadline = origin, deadline
        self.started = time.monotonic()
        self.warm_until = min(deadline, self.started + warmup)
        self.retried: Counter[str] = Counter()  # what the retried answers were
        self.warm_seconds = 0.0  # when, after the first request, the last retried answer came
        self.bytes = 0

    def visit(self, request: HttpRequest) -> tuple[Visit, Answer | None]:
        key = f"{request.method} {request.path}"
        while True:
            try:
                answer, error = fetch(self.origin, request, self.deadline), None
                # Only a status the user expects exactly is taken at once; a documented one may still mean "loading".
                not_ready = answer.status in WARMUP_STATUSES and answer.status != request.expect_status
                why = str(answer.status) if not_ready else None
            except NO_ANSWER as error_:
                answer, error = None, error_
                why = describe(error) if isinstance(error, (ConnectionRefusedError, ConnectionResetError)) else None
            if why is None or time.monotonic() + RETRY_INTERVAL > self.warm_until:
                break
            self.retried[why] += 1
            self.warm_seconds = time.monotonic() - self.started
            time.sleep(RETRY_INTERVAL)
        if answer is None:
            return Visit(key, None, None, f"{key}: no answer ({describe(error)})"), None
        self.bytes += answer.size
        complaint = _complaint(request.expect_status, answer.status)
        failure = complaint and f"{key}: {complaint}"
        return Visit(key, answer.status, answer.sha256, failure, answer.parts()), answer

    def warmup_summary(self) -> str:
        if not self.retried:
            return "answered without a warm-up"
        seen = ", ".join(f"{why} x{count}" for why, count in self.retried.most_common())
        return f"warm-up: retried {seen} until {self.warm_seconds:.3g} s after the first request"


class _Crawl:
    """Breadth first from the start paths over what a browser loads, bounded by URLs, bytes and time."""

    def __init__(self, probe: HttpProbe, session: _Session):
        self.probe, self.session = probe, session
        self.queue = deque((path, 0) for path in dict.fromkeys(probe.paths))
        self.seen = set(probe.paths)
        self.fetched = 0
        self.stopped_by = ""  # the budget that ended the crawl, "" when it ran out of links

    def visits(self) -> Iterator[Visit]:
        probe, started = self.probe, time.monotonic()
        while self.queue:
            self.stopped_by = self._budget_used_up(started)
            if self.stopped_by:
                return
            path, depth = self.queue.popleft()
            visit, answer = self.session.visit(HttpRequest(path, expect_status=None))
            self.fetched += 1
            yield visit
            for link in answer.links() if answer else ():
                found = self.session.origin.path_of(link.url)
                deeper = depth + link.navigates
                if found and found not in self.seen and deeper <= probe.crawl_depth:
                    self.seen.add(found)
                    self.queue.append((found, deeper))

    def _budget_used_up(self, started: float) -> str:
        probe = self.probe
        if self.fetched >= probe.page_budget:
            return f"its {probe.page_budget}-URL budget"
        if self.session.bytes >= probe.byte_budget:
            return f"its {probe.byte_budget // (1024 * 1024)} MB budget"
        if time.monotonic() - started >= probe.crawl_seconds:
            return f"its {probe.crawl_seconds:g} s budget"
        return ""

    def summary(self) -> str:
        """Why the crawl stopped early, "" when it fetched every URL it found."""
        if not self.stopped_by:
            return ""
        return f"crawl stopped at {self.stopped_by} with {len(self.queue)} more URLs to fetch"


def _complaint(expected: int | frozenset[int] | None, status: int) -> str | None:
    if expected is None:
        return f"status {status}" if status >= 500 else None
    if isinstance(expected, frozenset):
        documented = ", ".join(map(str, sorted(expected))) if len(expected) <= 10 else "the documented ones"
        return f"status {status}, expected one of {documented}" if status not in expected else None
    return f"status {status}, expected {expected}" if status != expected else None


def _outcome(name: str, visits: list[Visit], crawl: str = "", readiness: str = "") -> ProbeOutcome:
    fingerprint: dict[str, dict] = {}
    parts: dict[str, Mapping[str, str]] = {}
    for visit in visits:
        key, copy = visit.key, 1
        while key in fingerprint:  # the same request declared twice, or declared and crawled
            copy += 1
            key = f"{visit.key} #{copy}"
        fingerprint[key] = {"status": visit.status, "sha256": visit.sha256}
        parts[key] = visit.parts
    failures = [visit.failure for visit in visits if visit.failure]
    crawled = f" ({crawl})" if crawl else ""
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        return ProbeOutcome(name, False, failures[0] + more + crawled, fingerprint, parts, readiness=readiness)
    return ProbeOutcome(name, True, _status_summary(visits) + crawled, fingerprint, parts, readiness=readiness)


def _status_summary(visits: list[Visit]) -> str:
    """"3 URLs, all 200" or "4 URLs: 200 x3, 404 x1"."""
    counts = Counter(visit.status for visit in visits)
    if len(counts) == 1:
        return f"{len(visits)} URLs, all {next(iter(counts))}"
    return f"{len(visits)} URLs: " + ", ".join(f"{status} x{n}" for status, n in sorted(counts.items()))
