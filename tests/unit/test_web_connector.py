"""The web connector against a real HTTP server on 127.0.0.1 that logs every request.

A module-wide guard on socket.create_connection refuses (and records) any connection that
is not to loopback, so a broken SSRF guard can never send traffic anywhere else.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from ragline.connectors.base import ConnectorError, KnownDocument, SourceItem, sha256_bytes
from ragline.connectors.ssrf import unsafe_reason
from ragline.connectors.web import WebConfig, WebConnector

HTML = "text/html; charset=utf-8"
STAMP = "Wed, 21 Oct 2015 07:28:00 GMT"


@dataclass
class Page:
    body: bytes = b"<html><body>hello</body></html>"
    status: int = 200
    content_type: str | None = HTML
    headers: dict[str, str] = field(default_factory=dict)
    send_length: bool = True  # False: no Content-Length, the body runs until the connection closes
    delay: float = 0.0  # before the response
    trickle: float = 0.0  # between single bytes of the body


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    at: float


Route = Page | Callable[[dict[str, str]], Page]


class Site:
    """A small site served from a dict of paths; `hits` records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[Hit] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                site.hits.append(Hit(self.path, headers, time.monotonic()))
                route = site.routes.get(self.path, Page(b"not found", status=404, content_type="text/plain"))
                page = route(headers) if callable(route) else route
                time.sleep(page.delay)
                self.send_response(page.status)
                if page.content_type:
                    self.send_header("Content-Type", page.content_type)
                for name, value in page.headers.items():
                    self.send_header(name, value)
                if page.send_length:
                    self.send_header("Content-Length", str(len(page.body)))
                self.end_headers()
                if not page.trickle:
                    self.wfile.write(page.body)
                for byte in page.body if page.trickle else b"":
                    self.wfile.write(bytes([byte]))
                    time.sleep(page.trickle)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda *args: None  # a client that gave up (timeout test) is fine
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [hit.path for hit in self.hits]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():
    server = Site()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def connections(monkeypatch) -> list[tuple[str, int]]:
    """Every address a connection was attempted to; anything but loopback is refused."""
    attempted: list[tuple[str, int]] = []
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        attempted.append(address)
        if address[0] != "127.0.0.1":
            raise OSError(f"test guard: no connections to {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    return attempted


@pytest.fixture
def fake_dns(monkeypatch) -> dict[str, list[str]]:
    """Host names the test makes resolve to chosen addresses."""
    names: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in names[host]]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


def connector(**options) -> WebConnector:
    defaults = {"allowed_hosts": ["127.0.0.1"], "rate_limit_per_second": 1000.0, "timeout": 5.0}
    return WebConnector(WebConfig(**(defaults | options)))


def run(web: WebConnector, known: dict[str, KnownDocument] | None = None) -> dict[str, SourceItem]:
    return {item.document_id: item for item in web.items(known or {})}


def reasons(web: WebConnector) -> dict[str, str]:
    return dict(web.errors)


def test_url_list_yields_bytes_named_for_the_parser(site):
    site.routes.update(
        {
            "/page": Page(b"<html><title>T</title></html>", headers={"ETag": '"p1"'}),
            "/report.pdf": Page(b"%PDF-1.4 fake", content_type="application/pdf"),
            "/notes": Page(b"# Notes", content_type="text/markdown", headers={"Last-Modified": STAMP}),
            "/a.txt": Page(b"plain", content_type="text/plain; charset=utf-8"),
            "/readme.md": Page(b"# served as text/plain", content_type="text/plain"),
            "/download/file.pdf": Page(b"%PDF-1.4 x", content_type="application/octet-stream"),
            "/old": Page(b"", status=301, headers={"Location": "/page"}),
            "/logo.png": Page(b"\x89PNG", content_type="image/png"),
        }
    )
    urls = ["/page#section", "/report.pdf", "/notes", "/a.txt", "/readme.md", "/download/file.pdf", "/old", "/logo.png"]
    web = connector(urls=[site.url(u) for u in urls])
    items = run(web)

    assert web.source.startswith("web:")
    assert set(items) == {site.url(u.split("#")[0]) for u in urls if u != "/logo.png"}
    filenames = {doc_id.rsplit("/", 1)[-1]: item.filename for doc_id, item in items.items()}
    assert filenames == {
        "page": "page.html",
        "report.pdf": "report.pdf",
        "notes": "notes.md",
        "a.txt": "a.txt",
        "readme.md": "readme.md",
        "file.pdf": "file.pdf",
        "old": "page.html",
    }
    page = items[site.url("/page")]
    assert page.content == b"<html><title>T</title></html>"
    assert page.content_hash == sha256_bytes(page.content)
    assert page.version == '"p1"' and page.title is None and page.path is None and page.text is None
    assert page.metadata == {"url": site.url("/page"), "content_type": "text/html"}
    assert items[site.url("/notes")].version == STAMP
    text = items[site.url("/a.txt")]
    assert text.version == text.content_hash == sha256_bytes(b"plain")
    # A redirect keeps the requested URL as the id and reports where the content came from.
    assert items[site.url("/old")].metadata["url"] == site.url("/page")
    assert "image/png" in reasons(web)[site.url("/logo.png")]
    assert all(hit.headers["user-agent"] == "ragline/0.1 (+https://github.com/ragline)" for hit in site.hits)


def _urlset(*urls: str) -> bytes:
    image = "<image:image><image:loc>{}.png</image:loc></image:image>"
    entries = "".join(f"<url><loc>{u}</loc>{image.format(u)}</url>" for u in urls)
    return (
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        f'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">{entries}</urlset>'
    ).encode()


def _index(*urls: str) -> bytes:
    entries = "".join(f"<sitemap><loc>{u}</loc></sitemap>" for u in urls)
    return f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</sitemapindex>'.encode()


def test_sitemap(site):
    site.routes["/sitemap.xml"] = Page(_urlset(site.url("/a"), site.url("/b")), content_type="application/xml")
    site.routes["/a"] = Page()
    site.routes["/b"] = Page()
    web = connector(sitemap=site.url("/sitemap.xml"))
    assert set(run(web)) == {site.url("/a"), site.url("/b")}
    assert web.errors == []
    assert web.source == "web:sitemap:" + site.url("/sitemap.xml")


def test_sitemap_index_nesting_and_gzip(site):
    gzipped = gzip.compress(_urlset(site.url("/b"), site.url("/c#x")))
    site.routes.update(
        {
            "/sitemap.xml": Page(_index(site.url("/s1.xml"), site.url("/nested.xml")), content_type="application/xml"),
            "/s1.xml": Page(_urlset(site.url("/a")), content_type="application/xml"),
            "/nested.xml": Page(_index(site.url("/s2.xml.gz")), content_type="application/xml"),
            "/s2.xml.gz": Page(gzipped, content_type="application/gzip"),
        }
    )
    for path in "/a", "/b", "/c":
        site.routes[path] = Page()
    web = connector(sitemap=site.url("/sitemap.xml"))
    assert set(run(web)) == {site.url("/a"), site.url("/b"), site.url("/c")}
    assert not any(path.endswith(".png") for path in site.paths())  # image:loc is not a page


def test_sitemap_failures(site):
    # The sitemap itself unreachable: the whole source fails, nothing may be deleted.
    with pytest.raises(ConnectorError, match="sitemap"):
        run(connector(sitemap=site.url("/missing.xml")))

    # A nested sitemap failing makes the listing partial: known pages it may list are kept.
    site.routes["/sitemap.xml"] = Page(_index(site.url("/s1.xml"), site.url("/broken.xml")), content_type="text/xml")
    site.routes["/s1.xml"] = Page(_urlset(site.url("/a")), content_type="text/xml")
    site.routes["/broken.xml"] = Page(b"oops", status=503, content_type="text/plain")
    site.routes["/a"] = Page()
    known = {site.url("/elsewhere"): KnownDocument(version="v", content_hash="h")}
    web = connector(sitemap=site.url("/sitemap.xml"))
    assert set(run(web, known)) == {site.url("/a")}
    assert "503" in reasons(web)[site.url("/broken.xml")]
    assert web.keep == {site.url("/elsewhere")}


def _links(*hrefs: str) -> Page:
    return Page("".join(f'<a href="{href}">x</a>' for href in hrefs).encode())


def test_crawl_follows_same_site_links_to_max_depth(site):
    site.routes.update(
        {
            "/": _links(
                "/a",
                "/a#top",
                "doc.pdf",
                "mailto:x@example.com",
                f"http://localhost:{site.port}/elsewhere",
                f"https://127.0.0.1:{site.port}/tls",
            ),
            "/a": _links("/a/deep", "/"),
            "/a/deep": _links("/a/deeper"),
            "/a/deeper": Page(),
            "/doc.pdf": Page(b"%PDF", content_type="application/pdf"),
        }
    )
    web = connector(crawl=site.url("/"), max_depth=2)
    items = run(web)
    assert set(items) == {site.url(p) for p in ["/", "/a", "/doc.pdf", "/a/deep"]}
    assert web.errors == []
    assert "/a/deeper" not in site.paths() and "/elsewhere" not in site.paths() and "/tls" not in site.paths()
    assert web.keep == set()

    # A second run with everything known still discovers every page (link pages are
    # fetched in full), and the leaf page at max_depth is fetched conditionally.
    site.routes["/a/deep"] = lambda h: Page(status=304) if "if-none-match" in h else Page(headers={"ETag": '"d"'})
    known = {doc_id: KnownDocument(version='"d"', content_hash=item.content_hash) for doc_id, item in items.items()}
    site.hits.clear()
    again = run(connector(crawl=site.url("/"), max_depth=2), known)
    assert set(again) == set(items)
    assert not again[site.url("/a/deep")].has_body
    requested = {hit.path: hit.headers for hit in site.hits}
    assert "if-none-match" not in requested["/"] and requested["/a/deep"]["if-none-match"] == '"d"'


def test_crawl_page_limit_keeps_what_it_did_not_reach(site):
    site.routes["/"] = _links("/1", "/2", "/3")
    for path in "/1", "/2", "/3":
        site.routes[path] = Page()
    known = {site.url("/3"): KnownDocument(version="v", content_hash="h")}
    web = connector(crawl=site.url("/"), max_pages=2)
    assert set(run(web, known)) == {site.url("/"), site.url("/1")}
    assert [p for p in site.paths() if p != "/robots.txt"] == ["/", "/1"]
    assert web.keep == {site.url("/3")}

    # A page that failed may have linked to known ones: they are kept too, but not a 404.
    site.routes["/"] = _links("/1", "/hub", "/dead")
    site.routes["/hub"] = Page(b"", status=503)
    dead = {site.url("/dead"): KnownDocument(version="v", content_hash="h")}
    web = connector(crawl=site.url("/"), max_pages=10)
    assert set(run(web, known | dead)) == {site.url("/"), site.url("/1")}
    assert web.keep == {site.url("/3"), site.url("/hub")} and "503" in reasons(web)[site.url("/hub")]

    # A complete crawl lets known pages that are no longer linked go.
    site.routes["/"] = _links("/1")
    web = connector(crawl=site.url("/"), max_pages=10)
    assert set(run(web, known)) == {site.url("/"), site.url("/1")}
    assert web.keep == set()


def test_crawl_start_unreadable_fails_the_source(site):
    with pytest.raises(ConnectorError, match="crawl start"):
        run(connector(crawl=site.url("/nothing-here")))


def test_robots_txt(site):
    site.routes["/robots.txt"] = Page(b"User-agent: *\nDisallow: /private\n", content_type="text/plain")
    site.routes["/public"] = Page()
    site.routes["/private/x"] = Page()
    known = {site.url("/private/x"): KnownDocument(version="v", content_hash="h")}
    web = connector(urls=[site.url("/public"), site.url("/private/x")])
    assert set(run(web, known)) == {site.url("/public")}
    assert "/private/x" not in site.paths()
    assert "robots.txt" in reasons(web)[site.url("/private/x")]
    assert web.keep == set()  # disallowed now: the pipeline may drop it

    assert set(run(connector(urls=[site.url("/private/x")], respect_robots_txt=False))) == {site.url("/private/x")}

    # robots.txt erroring means "stay away for now", not "gone".
    site.routes["/robots.txt"] = Page(b"", status=500)
    web = connector(urls=[site.url("/private/x")])
    assert run(web, known) == {}
    assert "robots.txt unavailable" in reasons(web)[site.url("/private/x")]
    assert web.keep == {site.url("/private/x")}


def test_etag_conditional_get_yields_bodiless_item(site):
    changed = Page(headers={"ETag": '"v1"'})
    site.routes["/page"] = lambda h: Page(status=304) if h.get("if-none-match") == '"v1"' else changed
    url = site.url("/page")
    first = run(connector(urls=[url]))[url]
    assert first.version == '"v1"' and first.has_body
    assert "if-none-match" not in site.hits[-1].headers

    known = {url: KnownDocument(version='"v1"', content_hash="known-hash")}
    second = run(connector(urls=[url]), known)[url]
    assert site.hits[-1].headers["if-none-match"] == '"v1"'
    assert not second.has_body and second.filename is None
    assert (second.version, second.content_hash) == ('"v1"', "known-hash")


def test_last_modified_conditional_get(site):
    changed = Page(b"x", content_type="text/plain", headers={"Last-Modified": STAMP})
    site.routes["/doc.txt"] = lambda h: Page(status=304) if h.get("if-modified-since") == STAMP else changed
    url = site.url("/doc.txt")
    assert run(connector(urls=[url]))[url].version == STAMP
    item = run(connector(urls=[url]), {url: KnownDocument(version=STAMP, content_hash="h")})[url]
    assert site.hits[-1].headers["if-modified-since"] == STAMP
    assert not item.has_body and item.content_hash == "h" and item.version == STAMP


def test_content_hash_version_sends_no_validators(site):
    site.routes["/a.txt"] = Page(b"x", content_type="text/plain")
    url = site.url("/a.txt")
    run(connector(urls=[url]), {url: KnownDocument(version=sha256_bytes(b"old"), content_hash=sha256_bytes(b"old"))})
    headers = site.hits[-1].headers
    assert "if-none-match" not in headers and "if-modified-since" not in headers


def test_max_bytes_fails_that_document_only(site):
    site.routes["/big"] = Page(b"x" * 5000)
    site.routes["/streamed"] = Page(b"x" * 5000, send_length=False)  # caught while streaming
    site.routes["/small"] = Page(b"ok")
    known = {site.url("/big"): KnownDocument(version="v", content_hash="h")}
    web = connector(urls=[site.url(p) for p in ["/big", "/streamed", "/small"]], max_bytes=1000)
    assert set(run(web, known)) == {site.url("/small")}
    assert "max_bytes" in reasons(web)[site.url("/big")]
    assert "max_bytes" in reasons(web)[site.url("/streamed")]
    assert web.keep == {site.url("/big"), site.url("/streamed")}  # they exist, just too large now


def test_gone_versus_transient_failures(site):
    site.routes["/gone"] = Page(b"", status=410)
    site.routes["/broken"] = Page(b"", status=500)
    site.routes["/slow"] = Page(delay=1.0)
    site.routes["/trickle"] = Page(b"x" * 40, trickle=0.05)  # never idle for a whole timeout
    names = ["/missing", "/gone", "/broken", "/slow", "/trickle", "/new-broken"]
    site.routes["/new-broken"] = Page(b"", status=502)
    known = {site.url(p): KnownDocument(version="v", content_hash="h") for p in names if p != "/new-broken"}
    web = connector(urls=[site.url(p) for p in names], timeout=0.3)
    assert run(web, known) == {}
    errors = reasons(web)
    assert "404" in errors[site.url("/missing")] and "410" in errors[site.url("/gone")]
    assert "500" in errors[site.url("/broken")] and "timed out" in errors[site.url("/slow")]
    assert "timed out" in errors[site.url("/trickle")] and "502" in errors[site.url("/new-broken")]
    # 404/410 let the pipeline delete; transient failures are kept (known or not: the
    # pipeline does not pass documents of an outdated index fingerprint in `known`).
    assert web.keep == {site.url(p) for p in ["/broken", "/slow", "/trickle", "/new-broken"]}


def test_rate_limit_spaces_requests_to_a_host(site):
    for path in "/1", "/2", "/3":
        site.routes[path] = Page()
    run(connector(urls=[site.url(p) for p in ["/1", "/2", "/3"]], rate_limit_per_second=5.0))
    times = [hit.at for hit in site.hits]
    assert len(times) == 4  # robots.txt and three pages
    assert all(later - earlier >= 0.15 for earlier, later in zip(times, times[1:], strict=False))


def test_ssrf_guard_refuses_loopback_by_default(site, connections):
    site.routes["/page"] = Page()
    url = site.url("/page")
    web = WebConnector(WebConfig(urls=[url], rate_limit_per_second=1000.0))
    assert run(web, {url: KnownDocument(version="v", content_hash="h")}) == {}
    reason = reasons(web)[url]
    assert "loopback" in reason and "private" in reason
    assert site.hits == [] and connections == []
    assert web.keep == {url}  # a refusal says nothing about the document being gone


@pytest.mark.parametrize(
    ("target", "kind"),
    [("http://10.0.0.1/secret", "private"), ("http://169.254.169.254/latest/meta-data/", "link-local")],
)
def test_redirect_to_internal_address_is_refused_before_connecting(site, connections, target, kind):
    site.routes["/jump"] = Page(b"", status=302, headers={"Location": target})
    web = connector(urls=[site.url("/jump")])
    assert run(web) == {}
    assert kind in reasons(web)[site.url("/jump")]
    assert {address for address, _ in connections} == {"127.0.0.1"}


def test_host_resolving_to_any_private_address_is_refused(site, connections, fake_dns):
    fake_dns["mixed.test"] = ["93.184.216.34", "10.1.2.3"]
    site.routes["/jump"] = Page(b"", status=307, headers={"Location": "http://mixed.test/x"})
    web = connector(urls=[site.url("/jump")])
    assert run(web) == {}
    assert "10.1.2.3" in reasons(web)[site.url("/jump")]
    assert {address for address, _ in connections} == {"127.0.0.1"}


def test_connection_is_pinned_to_the_vetted_address(site, connections, fake_dns):
    fake_dns["wiki.test"] = ["127.0.0.1"]
    site.routes["/page"] = Page()
    url = f"http://wiki.test:{site.port}/page"
    items = run(connector(urls=[url], allowed_hosts=["wiki.test"]))
    assert items[url].has_body
    assert ("127.0.0.1", site.port) in connections and all(address == "127.0.0.1" for address, _ in connections)
    assert site.hits[-1].headers["host"] == f"wiki.test:{site.port}"


def test_non_http_redirects_and_redirect_loops_are_refused(site, connections):
    site.routes["/file"] = Page(b"", status=302, headers={"Location": "file:///etc/passwd"})
    site.routes["/ftp"] = Page(b"", status=302, headers={"Location": "ftp://127.0.0.1/x"})
    site.routes["/loop"] = Page(b"", status=302, headers={"Location": "/loop"})
    web = connector(urls=[site.url(p) for p in ["/file", "/ftp", "/loop"]])
    assert run(web) == {}
    errors = reasons(web)
    assert "scheme 'file'" in errors[site.url("/file")] and "scheme 'ftp'" in errors[site.url("/ftp")]
    assert "redirects" in errors[site.url("/loop")]
    assert site.paths().count("/loop") == 6


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-global"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_classification(address, reason):
    assert unsafe_reason(address) == reason


def test_config_validation_names_the_fields():
    with pytest.raises(ValidationError, match="exactly one of urls, sitemap or crawl, not urls and sitemap"):
        WebConfig(urls=["http://example.com/"], sitemap="http://example.com/sitemap.xml")
    with pytest.raises(ValidationError, match="not none"):
        WebConfig()
    with pytest.raises(ValidationError) as error:
        WebConfig(urls=["ftp://example.com/file"])
    assert error.value.errors()[0]["loc"][0] == "urls" and "not an http(s) URL" in str(error.value)
    with pytest.raises(ValidationError) as error:
        WebConfig(crawl="http://example.com/", max_pages=0, colour="blue")
    assert {e["loc"][0] for e in error.value.errors()} == {"max_pages", "colour"}
    with pytest.raises(ValidationError, match="credentials"):
        WebConfig(urls=["https://user:secret@example.com/"])
