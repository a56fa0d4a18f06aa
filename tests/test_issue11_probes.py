"""Issue 11, without an engine: what a browser loads, the warm-up, volatility learned from two runs, the
sockets waited for, and requests from an OpenAPI document. The HTTP tests talk to real local servers."""
from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from probes import ExecProbe, HttpProbe, HttpRequest
from probes.interface import ProbeInputError
from probes.links import css_urls, read_page
from probes.listening import await_listening
from probes.openapi import load_openapi
from slim.build import volatility
from slim.engine import ExecResult
from slim.build.verify import compare_runs
from slim.model import RunOutcome
from tests.helpers import FakeEngine, serving, sockets, target

HTML = "text/html; charset=utf-8"


# ---------------------------------------------------------------- what a browser loads


def test_a_page_yields_what_a_browser_loads_and_where_a_user_goes():
    html = """<html><head>
      <link rel="stylesheet" href="css/site.css"><link rel="icon" href="/favicon.ico">
      <link rel="manifest" href="app.webmanifest"><link rel="preload" href="fonts/a.woff2" as="font">
      <script src="js/app.js"></script><style>h1 { background: url('img/h1.png') }</style>
    </head><body style="background-image: url(img/body.jpg)">
      <img src="img/a.png" srcset="img/a-2x.png 2x, img/a-3x.png 3x">
      <picture><source srcset="img/b.webp 1x"></picture><video src="v.mp4" poster="v.jpg"></video>
      <iframe src="embed/"></iframe>
      <a href="next.html#top">next</a><form action="search"><input name="q"></form>
      <form action="login" method="post"></form><a href="mailto:x@example.org">mail</a>
    </body></html>"""
    page = read_page(html, "http://h:1/app/index.html")
    loads = [link.url.removeprefix("http://h:1") for link in page.links if not link.navigates]
    goes = [link.url.removeprefix("http://h:1") for link in page.links if link.navigates]
    assert loads == [
        "/app/css/site.css", "/favicon.ico", "/app/app.webmanifest", "/app/fonts/a.woff2", "/app/js/app.js",
        "/app/img/a.png", "/app/img/a-2x.png", "/app/img/a-3x.png", "/app/img/b.webp", "/app/v.mp4",
        "/app/v.jpg", "/app/embed/", "/app/img/h1.png", "/app/img/body.jpg",
    ]
    assert goes == ["/app/next.html", "/app/search", "mailto:x@example.org"]  # not the POST form


def test_base_href_counts_for_links_before_and_after_it_and_a_trailing_slash_is_a_directory():
    html = '<link href="css/a.css"><base href="/ui/"><img src="img/b.png"><a href="../top">up</a>'
    assert [link.url for link in read_page(html, "http://h:1/ui/help/page").links] == [
        "http://h:1/ui/css/a.css", "http://h:1/ui/img/b.png", "http://h:1/top",
    ]
    assert [link.url for link in read_page('<img src="x.png">', "http://h:1/ui/help/").links] == [
        "http://h:1/ui/help/x.png"
    ]
    assert [link.url for link in read_page('<img src="x.png">', "http://h:1/ui/help").links] == ["http://h:1/ui/x.png"]


def test_css_urls_and_imports_in_every_spelling_comments_left_out():
    css = """@import "reset.css"; @import url(theme.css) screen;
      /* background: url(old.png) */
      .a { background: url( "img/a.png" ) } .b { background: url(img/b.png) no-repeat }
      @media print { .c { list-style-image: url('img/c.png') } }
      @font-face { src: url(fonts/f.woff2) format("woff2") }"""
    assert css_urls(css) == ["reset.css", "theme.css", "img/a.png", "img/b.png", "img/c.png", "fonts/f.woff2"]


UI = {
    "/": (200, HTML, '<a href="ui/">UI</a>'),
    "/ui/": (200, HTML, '<link rel="stylesheet" href="css/main.css"><script src="js/app.js"></script>'
                        '<img srcset="img/logo.png 1x, img/logo-2x.png 2x"><a href="deep/">deeper</a>'),
    "/ui/css/main.css": (200, "text/css", '@import "theme.css"; body { background: url(../img/bg.png) }'),
    "/ui/css/theme.css": (200, "text/css", "footer { background: url(../img/pattern.png) }"),
    "/ui/js/app.js": (200, "text/javascript", "console.log('ui')"),
    "/ui/img/logo.png": (200, "image/png", "png"),
    "/ui/img/logo-2x.png": (200, "image/png", "png2"),
    "/ui/img/bg.png": (200, "image/png", "bg"),
    "/ui/img/pattern.png": (200, "image/png", "pattern"),
    "/ui/deep/": (200, HTML, '<link rel="stylesheet" href="../css/main.css"><a href="deeper.html">x</a>'),
    "/ui/deep/deeper.html": (200, HTML, "too deep to be followed"),
}


def test_the_crawl_fetches_what_pages_load_at_their_own_depth_and_stylesheet_urls():
    with serving(UI) as port:
        outcome = HttpProbe(80, crawl_depth=2).run(target(port))
    assert outcome.ok, outcome.detail
    assert list(outcome.fingerprint) == [
        "GET /", "GET /ui/", "GET /ui/css/main.css", "GET /ui/js/app.js", "GET /ui/img/logo.png",
        "GET /ui/img/logo-2x.png", "GET /ui/deep/", "GET /ui/css/theme.css", "GET /ui/img/bg.png",
        "GET /ui/img/pattern.png",
    ]  # /ui/deep/ is two links from /: its own link is not followed, its stylesheet was fetched already


@pytest.mark.parametrize(
    "budget, reason",
    [({"page_budget": 3}, "its 3-URL budget"), ({"byte_budget": 1}, "its 0 MB budget"),
     ({"crawl_seconds": 0}, "its 0 s budget")],
)
def test_the_crawl_is_bounded_and_says_which_bound_stopped_it(budget, reason):
    with serving(UI) as port:
        outcome = HttpProbe(80, **budget).run(target(port))
    assert f"crawl stopped at {reason} with " in outcome.detail
    assert len(outcome.fingerprint) < len(UI) - 1


# ---------------------------------------------------------------- warm-up


def answers(*statuses: int, then: int = 200):
    """A route answering `statuses` in turn, then `then` for good."""
    sequence = itertools.chain(statuses, itertools.repeat(then))
    lock = threading.Lock()

    def status() -> int:
        with lock:
            return next(sequence)

    return status


def gated_site(status):
    """/ is served at once (a proxy's own page); /api answers what `status()` says (its backend warming up)."""
    return serving({"/": (200, HTML, '<a href="/api">api</a>'), "/api": (status, "application/json", "{}")})


def test_502_503_504_during_the_warm_up_mean_not_ready_yet():
    with gated_site(answers(502, 502, 503, 504)) as port:
        outcome = HttpProbe(80, ready_timeout=30).run(target(port))
    assert outcome.ok, outcome.detail
    assert outcome.fingerprint["GET /api"]["status"] == 200
    assert "warm-up: retried 502 x2, 503 x1, 504 x1" in outcome.readiness


def test_a_route_that_stays_503_past_the_warm_up_fails():
    with gated_site(answers(then=503)) as port:
        outcome = HttpProbe(80, ready_timeout=1).run(target(port))
    assert not outcome.ok
    assert outcome.detail.startswith("GET /api: status 503")


def test_a_status_the_user_expects_exactly_is_not_retried():
    with gated_site(answers(503, then=200)) as port:
        outcome = HttpProbe(80, paths=(), requests=(HttpRequest("/api", expect_status=503),)).run(target(port))
    assert outcome.ok and outcome.fingerprint["GET /api"]["status"] == 503
    assert outcome.readiness == "answered without a warm-up"


# ---------------------------------------------------------------- volatility


def status_site(version: str = "1.0", stylesheet: str = "/s.css"):
    counter = itertools.count(1)

    def page() -> str:
        return (f'<html><head><link rel="stylesheet" href="{stylesheet}"></head><body><table><tr><td>'
                f"{datetime.now().isoformat()}</td><td>{next(counter)}</td></tr></table></body></html>")

    def stats() -> str:
        return json.dumps({"service": "demo", "version": version, "requests": next(counter),
                           "time": time.time_ns(), "items": [{"id": 1}, {"id": 2}]})

    return {
        "/": (200, HTML, page),
        "/s.css": (200, "text/css", "td { color: red }"),
        "/stats": (200, "application/json", stats),
    }


def original_run(routes: dict) -> RunOutcome:
    """Two passes of the probe against the original, as `slim build` makes them."""
    probe = HttpProbe(80, requests=(HttpRequest("/stats"),))
    with serving(routes) as port:
        learned = volatility.learn(probe.run(target(port)), probe.run(target(port)))
    return RunOutcome("server", None, True, (learned,))


def slimmed_run(routes: dict) -> RunOutcome:
    with serving(routes) as port:
        return RunOutcome("server", None, True, (HttpProbe(80, requests=(HttpRequest("/stats"),)).run(target(port)),))


def test_what_differs_between_two_runs_of_the_original_is_volatile_and_compared_by_its_stable_parts():
    original = original_run(status_site())
    learned = original.probes[0]
    assert set(learned.volatile) == {"GET /", "GET /stats"}
    assert learned.volatile["GET /"].compared == "status 200, content type, HTML structure"
    # service, version and the two ids stayed; requests and time changed
    assert learned.volatile["GET /stats"].compared == "status 200, content type, JSON keys, 4 JSON values"
    comparison = compare_runs(original, slimmed_run(status_site()))[0]
    assert comparison.same, comparison.slimmed
    assert comparison.volatile == {key: stable.compared for key, stable in learned.volatile.items()}


@pytest.mark.parametrize(
    "changed, difference",
    [
        ({"version": "2.0"}, "GET /stats: different JSON value /version"),
        ({"stylesheet": "/other.css"}, "GET /: different HTML structure"),
    ],
)
def test_a_stable_part_of_a_volatile_answer_that_changes_is_a_difference(changed, difference):
    original = original_run(status_site())
    comparison = compare_runs(original, slimmed_run(status_site(**changed)))[0]
    assert not comparison.same
    assert difference in comparison.slimmed


def test_a_stylesheet_the_volatile_page_links_that_is_gone_is_a_difference():
    original = original_run(status_site())
    routes = status_site()
    del routes["/s.css"]
    comparison = compare_runs(original, slimmed_run(routes))[0]
    assert not comparison.same
    assert "GET /s.css: status 404, the original 200" in comparison.slimmed


def test_the_status_of_a_volatile_answer_is_compared():
    original = original_run(status_site())
    routes = status_site()
    routes["/stats"] = (500, "application/json", "{}")
    assert not compare_runs(original, slimmed_run(routes))[0].same


def test_an_exec_probe_whose_output_changes_is_compared_by_its_exit_code():
    def run(exit_code: int, output: bytes):
        return probe.run(target(1, FakeEngine(exec_result=ExecResult(exit_code, output))))

    probe = ExecProbe(("date",))
    learned = volatility.learn(run(0, b"12:00:01"), run(0, b"12:00:02"))
    assert set(learned.volatile) == {"sha256"}  # the exit code stayed: it is compared as ever
    original = RunOutcome("server", None, True, (learned,))
    assert compare_runs(original, RunOutcome("server", None, True, (run(0, b"12:00:07"),)))[0].same
    assert not compare_runs(original, RunOutcome("server", None, True, (run(1, b"12:00:07"),)))[0].same


# ---------------------------------------------------------------- the original's sockets


def test_the_wait_includes_the_sockets_the_original_listened_on_loopback_ones_too():
    read = sockets({0: {("0.0.0.0", 8080)}, 0.3: {("0.0.0.0", 8080), ("127.0.0.1", 9000)}})
    readiness = await_listening(FakeEngine(), "c0ffee", (8080,), timeout=30, read=read,
                                sockets=(("0.0.0.0", 8080), ("127.0.0.1", 9000)))
    assert readiness.sockets_missing == () and readiness.seconds >= 0.3
    assert readiness.describe().startswith(
        "port 8080 and the 2 sockets the original listened on (0.0.0.0:8080, 127.0.0.1:9000) listened after"
    )


def test_a_socket_that_never_listens_bounds_the_wait_and_is_named():
    readiness = await_listening(FakeEngine(), "c0ffee", (8080,), timeout=0.3, read=sockets({0: {("0.0.0.0", 8080)}}),
                                sockets=(("127.0.0.1", 9000),))
    assert readiness.sockets_missing == (("127.0.0.1", 9000),)
    assert readiness.describe().endswith("missing: 127.0.0.1:9000")


# ---------------------------------------------------------------- OpenAPI

OPENAPI_YAML = """
openapi: 3.0.3
info: {title: shop, version: "1"}
servers: [{url: "https://shop.example.org/{base}", variables: {base: {default: v1}}}]
paths:
  /items:
    get:
      parameters:
        - {name: limit, in: query, required: true, schema: {type: integer, minimum: 5}}
        - {name: sort, in: query, schema: {type: string}}
      responses: {"200": {description: ok}, "4XX": {description: bad}}
    post:
      requestBody:
        required: true
        content: {application/json: {schema: {$ref: "#/components/schemas/Item"}}}
      responses: {"201": {description: made}}
  /items/{id}:
    parameters: [{name: id, in: path, required: true, schema: {type: string}, example: "lamp 1"}]
    get:
      parameters: [{name: X-Tenant, in: header, required: true, schema: {type: string, enum: [acme, other]}}]
      responses: {default: {description: anything}}
    delete:
      responses: {"204": {description: gone}}
components:
  schemas:
    Item:
      type: object
      required: [name, tags]
      properties: {name: {type: string, minLength: 3}, tags: {type: array, items: {type: string}}, note: {type: string}}
"""

SWAGGER_JSON = {
    "swagger": "2.0",
    "info": {"title": "old", "version": "1"},
    "basePath": "/api",
    "paths": {
        "/users/{uid}": {
            "get": {
                "parameters": [{"name": "uid", "in": "path", "required": True, "type": "integer"}],
                "responses": {"200": {"description": "ok"}, "404": {"description": "no such user"}},
            }
        }
    },
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_openapi_3_yaml_gives_one_request_per_get_operation_with_examples_and_documented_statuses(tmp_path):
    requests = load_openapi(str(write(tmp_path, "shop.yaml", OPENAPI_YAML)))
    assert [(r.method, r.path) for r in requests] == [("GET", "/v1/items?limit=5"), ("GET", "/v1/items/lamp%201")]
    assert requests[0].expect_status == frozenset({200, *range(400, 500)})
    assert requests[1].headers == {"X-Tenant": "acme"}
    assert 404 in requests[1].expect_status and 500 not in requests[1].expect_status


def test_other_methods_only_when_asked_with_a_minimal_body(tmp_path):
    requests = load_openapi(str(write(tmp_path, "shop.yaml", OPENAPI_YAML)), ("POST", "DELETE"))
    assert [(r.method, r.path) for r in requests] == [("POST", "/v1/items"), ("DELETE", "/v1/items/lamp%201")]
    assert json.loads(requests[0].body) == {"name": "111", "tags": []}
    assert requests[0].expect_status == frozenset({201})


def test_swagger_2_json_with_its_base_path(tmp_path):
    requests = load_openapi(str(write(tmp_path, "old.json", json.dumps(SWAGGER_JSON))))
    assert [(r.method, r.path, r.expect_status) for r in requests] == [("GET", "/api/users/1", frozenset({200, 404}))]


@pytest.mark.parametrize(
    "text, message",
    [
        ("openapi: 3.0.3\ninfo: {title: x}\npaths: {}\n",
         "not a valid OpenAPI or Swagger document: 'version' is a required property$"),
        ("{not: [valid", "cannot read it"),
    ],
)
def test_a_bad_api_document_is_a_usage_error_in_one_line(tmp_path, text, message):
    with pytest.raises(ProbeInputError, match=message) as error:
        load_openapi(str(write(tmp_path, "bad.yaml", text)))
    assert "\n" not in str(error.value)


def test_a_missing_api_document_is_a_usage_error(tmp_path):
    with pytest.raises(ProbeInputError, match="cannot read it"):
        load_openapi(str(tmp_path / "absent.yaml"))


def test_no_warm_up_once_the_ready_timeout_was_spent_waiting_for_the_originals_sockets():
    readiness = await_listening(FakeEngine(), "c0ffee", (80,), timeout=0.2, read=sockets({0: {("0.0.0.0", 80)}}),
                                sockets=(("127.0.0.1", 9000),))
    with gated_site(answers(502)) as port:
        outcome = HttpProbe(80, ready_timeout=30).run(target(port, readiness=readiness))
    assert not outcome.ok and outcome.detail.startswith("GET /api: status 502")
    assert outcome.readiness == "answered without a warm-up"
