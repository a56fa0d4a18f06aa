"""Probes against local servers on 127.0.0.1 and a stand-in engine: no container needed."""
from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from probes import ExecProbe, HostExecProbe, HttpProbe, HttpRequest, ProbeFile, Target, load_probe_file
from probes.http import NOT_HTTP, Origin, page_links, without_ignored
from probes.interface import ProbeInputError
from probes.listening import Listener, Readiness, await_listening, listeners, parse_listeners
from slim.engine import ExecResult
from tests.helpers import FakeEngine, serving, sockets, target

SITE = {
    "/": '<a href="/a.html">a</a> <a href="b.html#top">b</a> <img src="/img/logo.png">'
    '<a href="mailto:x@example.com">m</a> <a href="javascript:void(0)">j</a>'
    '<a href="http://example.com/away">away</a> <script src="//cdn.example.com/x.js"></script>'
    '<a href="#nav">fragment only</a>',
    "/a.html": '<link rel="stylesheet" href="style.css"><a href="deep/d.html">d</a><a href="/">home</a>',
    "/b.html": "<p>no links</p>",
    "/img/logo.png": b"\x89PNG not really",
    "/style.css": "a { color: red }",
    "/deep/d.html": '<a href="../e.html">e</a>',
    "/e.html": "<p>only at depth 3</p>",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------- links


def test_page_links_resolve_relative_links_and_drop_fragments():
    html = '<a href="b.html#x">b</a><img src="../img/i.png"><a href=" /c?q=1 ">c</a><a href="#top">t</a>'
    assert page_links(html, "http://127.0.0.1:8080/dir/page.html") == [
        "http://127.0.0.1:8080/dir/b.html",
        "http://127.0.0.1:8080/img/i.png",
        "http://127.0.0.1:8080/c?q=1",
        "http://127.0.0.1:8080/dir/page.html",
    ]


def test_page_links_honour_base_href():
    html = '<base href="/static/"><script src="app.js"></script>'
    assert page_links(html, "http://127.0.0.1:1/x/y.html") == ["http://127.0.0.1:1/static/app.js"]


@pytest.mark.parametrize(
    "url, path",
    [
        ("http://127.0.0.1:8080/a/../b/./c", "/b/c"),
        ("http://127.0.0.1:8080", "/"),
        ("HTTP://127.0.0.1:8080/x?y=1", "/x?y=1"),
        ("http://127.0.0.1:8081/x", None),  # another port
        ("https://127.0.0.1:8080/x", None),  # another scheme
        ("http://example.com:8080/x", None),
        ("mailto:someone@example.com", None),
        ("javascript:void(0)", None),
        ("http://127.0.0.1:port/x", None),
    ],
)
def test_origin_keeps_only_its_own_urls(url, path):
    assert Origin("http", "127.0.0.1", 8080).path_of(url) == path


def test_origin_default_port():
    assert Origin("https", "127.0.0.1", 443).path_of("https://127.0.0.1/x") == "/x"


def test_without_ignored_removes_matches_and_keeps_other_bytes():
    body = b"at 12:34:56 \xff id=42"
    assert without_ignored(body, (r"\d{2}:\d{2}:\d{2}", r"id=\d+")) == b"at  \xff "


# ---------------------------------------------------------------- HttpProbe


def test_crawl_reaches_pages_only_linked_and_stays_in_origin():
    with serving(SITE) as port:
        outcome = HttpProbe(80).run(target(port))
    assert outcome.ok, outcome.detail
    assert list(outcome.fingerprint) == [
        "GET /", "GET /a.html", "GET /b.html", "GET /img/logo.png", "GET /style.css", "GET /deep/d.html",
    ]
    assert outcome.detail == "6 URLs, all 200"
    assert outcome.probe == "http :80"


def test_crawl_depth_is_honoured():
    with serving(SITE) as port:
        shallow = HttpProbe(80, crawl_depth=1).run(target(port))
        deeper = HttpProbe(80, crawl_depth=3).run(target(port))
    assert "GET /deep/d.html" not in shallow.fingerprint and "GET /a.html" in shallow.fingerprint
    assert "GET /e.html" in deeper.fingerprint


def test_page_budget_is_honoured():
    with serving(SITE) as port:
        outcome = HttpProbe(80, page_budget=2).run(target(port))
    assert list(outcome.fingerprint) == ["GET /", "GET /a.html"]


def test_fingerprint_is_status_and_body_hash_and_stable():
    with serving(SITE) as port:
        first = HttpProbe(80).run(target(port))
        second = HttpProbe(80).run(target(port))
    assert first.fingerprint == second.fingerprint
    assert set(first.fingerprint["GET /b.html"]) == {"status", "sha256"}


def test_server_error_fails_the_probe_but_4xx_does_not():
    pages = {"/": '<a href="/gone">gone</a><a href="/broken">broken</a>', "/broken": (500, "oops")}
    with serving(pages) as port:
        outcome = HttpProbe(80).run(target(port))
    assert not outcome.ok
    assert outcome.detail == "GET /broken: status 500"
    assert outcome.fingerprint["GET /gone"]["status"] == 404


def test_declared_requests_are_sent_and_checked():
    requests = (
        HttpRequest("/submit", method="POST", headers={"X-Token": "t"}, body="hello", expect_status=201),
        HttpRequest("/missing", expect_status=200),
    )
    with serving(SITE) as port:
        outcome = HttpProbe(80, paths=(), requests=requests).run(target(port))
    assert not outcome.ok
    assert outcome.detail == "GET /missing: status 404, expected 200"
    assert outcome.fingerprint["POST /submit"]["status"] == 201


def test_a_request_made_twice_gets_its_own_key():
    with serving(SITE) as port:
        outcome = HttpProbe(80, requests=(HttpRequest("/"),)).run(target(port))
    assert outcome.fingerprint["GET / #2"] == outcome.fingerprint["GET /"]


def test_ignore_regexes_make_volatile_pages_fingerprint_the_same():
    pages = {"/clock": lambda: f"now {time.time_ns()} ok"}
    volatile = HttpProbe(80, paths=(), requests=(HttpRequest("/clock"),))
    masked = HttpProbe(80, paths=(), requests=(HttpRequest("/clock", ignore=(r"\d+",)),))
    with serving(pages) as port:
        assert volatile.run(target(port)).fingerprint != volatile.run(target(port)).fingerprint
        assert masked.run(target(port)).fingerprint == masked.run(target(port)).fingerprint


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory) -> ssl.SSLContext:
    where = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(where / "key.pem"), "-out", str(where / "cert.pem")],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(where / "cert.pem", where / "key.pem")
    return context


def test_tls_is_detected_and_the_site_crawled_over_https(tls_context):
    with serving(SITE, tls=tls_context) as port:
        probe = HttpProbe(80)
        origin = probe.await_ready(target(port))
        outcome = probe.run(target(port))
    assert origin.scheme == "https"
    assert outcome.ok, outcome.detail
    assert "GET /deep/d.html" in outcome.fingerprint


def test_plain_http_is_not_mistaken_for_tls():
    with serving(SITE) as port:
        assert HttpProbe(80).await_ready(target(port)).scheme == "http"


def test_a_server_that_starts_listening_late_is_waited_for():
    port = free_port()

    def serve_later():
        time.sleep(1)
        with serving(SITE, port=port):
            time.sleep(5)

    threading.Thread(target=serve_later, daemon=True).start()
    started = time.monotonic()
    outcome = HttpProbe(80, paths=("/b.html",), ready_timeout=10).run(target(port))
    assert outcome.ok, outcome.detail
    assert time.monotonic() - started >= 0.9


def test_connections_closed_before_the_app_is_up_mean_not_ready():
    # docker-proxy accepts on the published port and hangs up while nothing listens in the container.
    with serving(SITE, ready_at=time.monotonic() + 1) as port:
        outcome = HttpProbe(80, paths=("/b.html",), ready_timeout=10).run(target(port))
    assert outcome.ok, outcome.detail


def test_a_port_that_never_answers_http_fails_with_the_reason():
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, never answers
        port = listener.getsockname()[1]
        started = time.monotonic()
        outcome = HttpProbe(6379, ready_timeout=1).run(target(port, container_port=6379))
    assert not outcome.ok
    assert outcome.detail.startswith("port 6379 did not answer HTTP within 1 s")
    assert time.monotonic() - started < 15


def test_a_container_that_exits_while_waiting_fails_at_once():
    engine = FakeEngine(running=False, exit_code=3)
    started = time.monotonic()
    outcome = HttpProbe(80, ready_timeout=30).run(target(free_port(), engine))
    assert outcome.detail == "container exited (code 3) before port 80 answered"
    assert time.monotonic() - started < 5


def test_the_run_deadline_bounds_the_wait():
    bounded = Target(FakeEngine(), "c0ffee", "127.0.0.1", {80: free_port()}, deadline=time.monotonic() + 0.5)
    started = time.monotonic()
    assert not HttpProbe(80, ready_timeout=30).run(bounded).ok
    assert time.monotonic() - started < 3


# ---------------------------------------------------------------- HttpProbe after the wait for listening ports


@contextmanager
def foreign_protocol(greeting: bytes | None):
    """A server of another protocol: answers any connection with `greeting` and hangs up (None: says nothing
    and keeps the connection open, like a server waiting for the rest of a command)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            if greeting is None:
                held.append(connection)
                continue
            with connection:
                connection.recv(1024)
                connection.sendall(greeting)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for connection in held:
            connection.close()


@contextmanager
def redis_like():
    """A server of a line protocol as redis is: an error line for each line it does not know, the connection
    closed without an answer on a `Host:` line, and silence until a line ends (a TLS ClientHello has none).
    Yields its port and the first bytes each connection sent."""
    listener = socket.create_server(("127.0.0.1", 0))
    first_bytes: list[bytes] = []
    held: list[socket.socket] = []

    def talk(connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as lines:
            first_bytes.append(lines.peek(1)[:1])
            while line := lines.readline():
                if line.lower().startswith(b"host:"):
                    return
                if line.strip():
                    connection.sendall(b"-ERR unknown command\r\n")

    def serve():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)
            threading.Thread(target=talk, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1], first_bytes
    finally:
        listener.close()
        for connection in held:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def test_a_plain_text_protocol_is_not_asked_for_tls():
    """Redis waits silently for the end of a ClientHello's "line": a plain-text answer to a bare request
    already says the port speaks neither HTTP nor TLS, so no handshake is tried."""
    with redis_like() as (port, first_bytes):
        outcome = HttpProbe(6379).run(target(port, container_port=6379, readiness=listening(6379)))
    assert (outcome.ok, outcome.detail, dict(outcome.fingerprint)) == (True, "listening, not HTTP", NOT_HTTP)
    assert first_bytes == [b"G", b"G"]  # the HTTP request, then the bare one; no TLS record (0x16)


def listening(*ports: int) -> Readiness:
    return Readiness(ports, frozenset(ports), seconds=0.1)


def test_an_exposed_port_that_listens_but_is_not_http_passes_the_default_probe():
    with foreign_protocol(b"-ERR unknown command 'GET'\r\n") as port:
        outcome = HttpProbe(6379).run(target(port, container_port=6379, readiness=listening(6379)))
    assert (outcome.ok, outcome.detail, dict(outcome.fingerprint)) == (True, "listening, not HTTP", NOT_HTTP)


def test_a_port_the_user_asked_http_of_fails_when_it_is_not_http():
    with foreign_protocol(b"-ERR unknown command 'GET'\r\n") as port:
        outcome = HttpProbe(6379, require_http=True).run(target(port, container_port=6379, readiness=listening(6379)))
    assert not outcome.ok
    assert outcome.detail == "port 6379 listens but does not answer HTTP (the answer is not HTTP)"


def test_a_silent_server_is_not_http_within_the_ready_timeout():
    started = time.monotonic()
    with foreign_protocol(None) as port:
        outcome = HttpProbe(5432, ready_timeout=1).run(target(port, container_port=5432, readiness=listening(5432)))
    assert (outcome.ok, outcome.detail) == (True, "listening, not HTTP")
    assert time.monotonic() - started < 5


def test_a_port_that_does_not_listen_fails_without_a_request():
    readiness = Readiness((8081,), frozenset({80}), seconds=30)
    outcome = HttpProbe(8081).run(target(free_port(), container_port=8081, readiness=readiness))
    assert not outcome.ok
    assert outcome.detail == "port 8081 did not listen in the container within 30 s (it listens on 80)"


def test_a_listening_http_port_is_crawled_at_once():
    with serving(SITE) as port:
        outcome = HttpProbe(80).run(target(port, readiness=listening(80)))
    assert outcome.ok and outcome.detail == "6 URLs, all 200"


def test_tls_is_detected_after_the_port_listens(tls_context):
    with serving(SITE, tls=tls_context) as port:
        outcome = HttpProbe(80, require_http=True).run(target(port, readiness=listening(80)))
    assert outcome.ok, outcome.detail
    assert "GET /deep/d.html" in outcome.fingerprint


# ---------------------------------------------------------------- listening sockets

TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 101 1 0 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 102 1 0 100 0 0 10 0
   2: 020011AC:18EB 010011AC:D2F0 01 00000000:00000000 00:00000000 00000000   999        0 103 1 0 20 4 30 10 -1
"""
TCP6_TABLE = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 00000000000000000000000001000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000
   2: 0000000000000000FFFF00000100007F:1389 00000000000000000000000000000000:0000 0A 00000000:00000000
"""


@pytest.mark.skipif(sys.byteorder != "little", reason="the tables are written as a little-endian kernel does")
def test_parse_listeners_reads_listening_sockets_only():
    assert parse_listeners(TCP_TABLE) == {
        Listener(ipaddress.ip_address("0.0.0.0"), 6379),
        Listener(ipaddress.ip_address("127.0.0.1"), 8080),
    }
    assert parse_listeners(TCP6_TABLE) == {
        Listener(ipaddress.ip_address("::"), 80),
        Listener(ipaddress.ip_address("::1"), 3000),
        Listener(ipaddress.ip_address("::ffff:127.0.0.1"), 5001),
    }


@pytest.mark.parametrize(
    "address, reachable",
    [("0.0.0.0", True), ("172.17.0.2", True), ("::", True), ("127.0.0.1", False), ("::1", False),
     ("::ffff:127.0.0.1", False), ("::ffff:172.17.0.2", True)],
)
def test_only_listeners_off_the_loopback_are_reachable(address, reachable):
    assert Listener(ipaddress.ip_address(address), 80).reachable is reachable


def test_listeners_of_a_live_process_and_of_a_gone_one():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert Listener(ipaddress.ip_address("127.0.0.1"), port) in listeners(os.getpid())
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert listeners(pid_max + 1) is None


def test_await_listening_waits_for_every_port():
    read = sockets({0: {("0.0.0.0", 80)}, 0.3: {("0.0.0.0", 80), ("::", 443)}})
    started = time.monotonic()
    readiness = await_listening(FakeEngine(), "c0ffee", (443, 80), timeout=5, read=read)
    assert readiness.listening == {80, 443} and readiness.missing() == ()
    assert 0.25 <= time.monotonic() - started < 2
    assert readiness.why_not(80) == ""


def test_await_listening_is_bounded_and_says_where_the_server_listens():
    readiness = await_listening(FakeEngine(), "c0ffee", (8081,), timeout=0.3, read=sockets({0: {("0.0.0.0", 80)}}))
    assert readiness.missing() == (8081,)
    assert readiness.why_not(8081) == "port 8081 did not listen in the container within 0.3 s (it listens on 80)"


def test_await_listening_names_a_server_on_the_loopback_only():
    readiness = await_listening(FakeEngine(), "c0ffee", (80,), timeout=0.2, read=sockets({0: {("127.0.0.1", 80)}}))
    assert readiness.loopback_only == {80}
    assert "listens only on the container's loopback address" in readiness.why_not(80)


def test_await_listening_stops_at_once_when_the_container_exits():
    started = time.monotonic()
    readiness = await_listening(FakeEngine(running=False, exit_code=3), "c0ffee", (80,), timeout=30, read=sockets({}))
    assert time.monotonic() - started < 1
    assert readiness.exit_code == 3
    assert readiness.why_not(80) == "container exited (code 3) before port 80 listened"


def test_await_listening_without_access_to_the_sockets_observes_nothing():
    readiness = await_listening(FakeEngine(), "c0ffee", (80,), timeout=30, read=lambda pid: None)
    assert not readiness.observed and readiness.why_not(80) == ""


def test_nothing_to_wait_for():
    assert await_listening(FakeEngine(), "c0ffee", (), timeout=30, read=sockets({})).missing() == ()


# ---------------------------------------------------------------- exec and host


def test_exec_probe_fingerprints_exit_code_and_output():
    engine = FakeEngine(exec_result=ExecResult(0, b"PONG\n"))
    outcome = ExecProbe(("redis-cli", "ping"), user="redis").run(target(1, engine))
    assert outcome.probe == "exec redis-cli ping"
    assert outcome.ok and outcome.detail == "exit 0: PONG"
    assert outcome.fingerprint["exit_code"] == 0
    assert engine.execs == [(("redis-cli", "ping"), "redis")]


def test_exec_probe_fails_on_non_zero_exit():
    engine = FakeEngine(exec_result=ExecResult(127, b"sh: nope: not found\n"))
    outcome = ExecProbe(("nope",)).run(target(1, engine))
    assert not outcome.ok
    assert outcome.detail == "exit 127: sh: nope: not found"


def test_exec_probe_retries_until_the_command_succeeds():
    refused = ExecResult(1, b"Could not connect to Redis at 127.0.0.1:6379: Connection refused\n")
    engine = FakeEngine(exec_result=[refused, refused, ExecResult(0, b"PONG\n")])
    outcome = ExecProbe(("redis-cli", "ping"), ready_timeout=10).run(target(1, engine))
    assert (outcome.ok, outcome.detail) == (True, "exit 0: PONG (attempt 3)")
    pong = ExecProbe(("x",)).run(target(1, FakeEngine(exec_result=ExecResult(0, b"PONG\n"))))
    assert outcome.fingerprint == pong.fingerprint
    assert len(engine.execs) == 3


def test_exec_probe_gives_up_after_its_ready_timeout_with_the_last_attempt():
    engine = FakeEngine(exec_result=ExecResult(2, b"no response\n"))
    started = time.monotonic()
    outcome = ExecProbe(("pg_isready",), ready_timeout=0.8).run(target(1, engine))
    assert time.monotonic() - started < 3
    assert not outcome.ok and outcome.detail.startswith("exit 2: no response (attempt ")
    assert outcome.fingerprint["exit_code"] == 2 and len(engine.execs) >= 2


def test_exec_probe_does_not_retry_a_missing_command_or_a_stopped_container():
    missing = FakeEngine(exec_result=ExecResult(126, b"exec failed: no such file\n"))
    stopped = FakeEngine(running=False, exec_result=ExecResult(1, b"down\n"))
    ExecProbe(("nope",)).run(target(1, missing))
    ExecProbe(("redis-cli", "ping")).run(target(1, stopped))
    assert (len(missing.execs), len(stopped.execs)) == (1, 1)


def test_exec_probe_that_hangs_is_given_up():
    engine = FakeEngine(exec_result=ExecResult(-1, b"", timed_out=True))
    outcome = ExecProbe(("sleep", "infinity"), timeout=5).run(target(1, engine))
    assert (outcome.ok, outcome.detail) == (False, "still running after 5 s, killed")
    assert engine.exec_timeouts == [5]


def test_host_probe_sees_the_published_ports():
    probe = HostExecProbe('echo "$SLIM_TARGET_HOST $SLIM_TARGET_PORT_80"')
    outcome = probe.run(target(32768))
    assert outcome.ok and outcome.detail == "exit 0: 127.0.0.1 32768"


def test_host_probe_failure_quotes_stderr():
    outcome = HostExecProbe("echo fine; echo broken >&2; exit 4").run(target(1))
    assert not outcome.ok
    assert outcome.detail == "exit 4: broken"
    assert outcome.fingerprint["exit_code"] == 4


def test_host_probe_timeout_kills_the_whole_process_group(tmp_path):
    marker = tmp_path / "survivor"
    probe = HostExecProbe(f"(sleep 2; touch {marker}) & sleep 30", timeout=0.5)
    started = time.monotonic()
    outcome = probe.run(target(1))
    assert not outcome.ok and outcome.detail == "still running after 0.5 s, killed"
    assert time.monotonic() - started < 5
    time.sleep(2.5)
    assert not marker.exists()


# ---------------------------------------------------------------- probe file


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "probes.yaml"
    path.write_text(text)
    return path


def test_probe_file_full(tmp_path):
    loaded = load_probe_file(write(tmp_path, r"""
http:
  - path: /items
    method: post
    port: 8000
    headers: {Accept: application/json, X-Count: 3}
    body: '{"a": 1}'
    expect_status: 201
    ignore: ["\\d{2}:\\d{2}:\\d{2}"]
  - path: /
exec:
  - ["redis-cli", "ping"]
host:
  - "./integration-test.sh"
"""))
    assert loaded.http == (
        HttpRequest("/items", "POST", 8000, {"Accept": "application/json", "X-Count": "3"}, '{"a": 1}', 201,
                    (r"\d{2}:\d{2}:\d{2}",)),
        HttpRequest("/"),
    )
    assert loaded.exec == (("redis-cli", "ping"),)
    assert loaded.host == ("./integration-test.sh",)


def test_empty_probe_file_declares_nothing(tmp_path):
    assert load_probe_file(write(tmp_path, "")) == ProbeFile()


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a\n", "expected a mapping with the sections http, exec, host, got a list"),
        ("probes: []\n", "unknown section 'probes' (known: http, exec, host)"),
        ("http: {path: /}\n", "section 'http' must be a list, got a mapping"),
        ("http: [/x]\n", "http[0]: expected a mapping with at least a 'path', got a string"),
        ("http: [{path: /}, {method: GET}]\n", "http[1]: 'path' is missing"),
        ("http: [{path: x}]\n", "http[0]: 'path' must be a path starting with /, got 'x'"),
        ("http: [{path: /, port: yes}]\n", "http[0]: 'port' must be a TCP port number, got True"),
        ("http: [{path: /, expect_status: 99}]\n", "http[0]: 'expect_status' must be a status 100-599, got 99"),
        ("http: [{path: /, method: 'GE T'}]\n", "http[0]: 'method' must be an HTTP method such as GET"),
        ("http: [{path: /, headers: [a]}]\n", "http[0]: 'headers' must be a mapping of header names to values"),
        ("http: [{path: /, ignore: '('}]\n", "http[0]: 'ignore' must be a list of regexes, got '('"),
        ("http: [{path: /, ignore: ['(']}]\n", "http[0]: 'ignore' pattern '(' is not a valid regex: missing )"),
        ("http: [{path: /, timeout: 3}]\n", "http[0]: unknown key 'timeout' (known: path, method, port"),
        ("exec: [redis-cli ping]\n", "exec[0]: expected a command as a list of strings"),
        ("exec: [[]]\n", "exec[0]: expected a command as a list of strings"),
        ("exec: [[sleep, 1]]\n", "exec[0]: expected a command as a list of strings"),
        ("host: [[a]]\n", "host[0]: expected a shell command line as a string, got ['a']"),
        ("http: [\n", "not valid YAML: expected the node content, but found '<stream end>' at line 2"),
    ],
)
def test_probe_file_errors_name_the_file_entry_and_problem(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ProbeInputError) as caught:
        load_probe_file(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    assert "\n" not in str(caught.value)


def test_missing_probe_file(tmp_path):
    with pytest.raises(ProbeInputError, match="cannot read the probe file: No such file or directory"):
        load_probe_file(tmp_path / "nope.yaml")


def test_requests_without_a_port_go_to_the_default_port(tmp_path):
    loaded = load_probe_file(write(tmp_path, """
http:
  - path: /a
  - {path: /b, port: 9000}
  - {path: /c, port: 80}
"""))
    assert [request.path for request in loaded.requests_for(80, default_port=80)] == ["/a", "/c"]
    assert [request.path for request in loaded.requests_for(9000, default_port=80)] == ["/b"]
    assert loaded.requests_for(80, default_port=None) == (HttpRequest("/c", port=80),)
