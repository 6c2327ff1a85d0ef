"""Web pages and files over HTTP: a list of URLs, a sitemap (or sitemap index), or a
same-site crawl.

Every request (each redirect hop, robots.txt and sitemaps included) goes through the SSRF
guard and a per-host rate limit. Documents known from the last run are fetched
conditionally, so an unchanged page costs a 304 and no download.

A URL that cannot be read is never yielded: it is recorded in `errors`, and when it may
well still exist (timeout, 5xx, refusal, too large) its id also goes to `keep`, so the
pipeline does not mistake a bad day for a deletion. Only 404/410, a
robots.txt disallow or a content type ragline cannot parse let a known document go.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from email.utils import parsedate
from html.parser import HTMLParser
from pathlib import PurePosixPath
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ragline.connectors.base import Connector, ConnectorError, KnownDocument, SourceItem, sha256_bytes, sha256_text
from ragline.connectors.ssrf import ALLOWED_SCHEMES, UnsafeURL, resolve_safe

MAX_REDIRECTS = 5
MAX_SITEMAP_NESTING = 3
ROBOTS_AGENT = "ragline"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Content-Type -> the extension ragline's parser dispatches on.
_EXTENSIONS = {
    "text/html": ".html",
    "application/xhtml+xml": ".html",
    "application/pdf": ".pdf",
    "text/markdown": ".md",
    "text/x-markdown": ".md",
    "text/plain": ".txt",
    "text/csv": ".csv",
    "message/rfc822": ".eml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
}
# Servers label what they do not know as text/plain or octet-stream (a .md, a .pdf behind a
# download link): then the URL's own extension is the better guess.
_GENERIC_TYPES = {"", "text/plain", "application/octet-stream"}
_URL_SUFFIXES = set(_EXTENSIONS.values()) | {".htm", ".markdown", ".text"}


def canonical_url(url: str) -> str:
    """The document id of `url`: lower-case scheme and host, no default port, no fragment."""
    parts = urlsplit(url.strip())
    scheme, host, port = parts.scheme.lower(), parts.hostname or "", parts.port
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


class WebConfig(BaseModel):
    """Exactly one of `urls`, `sitemap` or `crawl` says what to read."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None, description="Stable source name; without it a URL list's source changes when the list does."
    )
    urls: list[str] | None = Field(None, min_length=1)
    sitemap: str | None = Field(None, description="A sitemap.xml or sitemap index URL.")
    crawl: str | None = Field(None, description="Start URL of a same-site crawl along <a href> links.")
    max_depth: int = Field(2, ge=0, description="Crawl: link hops from the start URL.")
    max_pages: int = Field(100, ge=1, description="Crawl: pages fetched at most.")
    respect_robots_txt: bool = True
    user_agent: str = "ragline/0.1 (+https://github.com/ragline)"
    rate_limit_per_second: float = Field(2.0, gt=0, description="Requests per second to any one host.")
    max_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Larger documents are skipped with an error.")
    timeout: float = Field(20.0, gt=0, description="Seconds per request, and again for reading its body.")
    allow_private_addresses: bool = Field(False, description="Turn the SSRF guard off (loopback, LAN, metadata).")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host names or IPs exempt from the private-address check, e.g. an intranet."
    )

    @field_validator("urls", "sitemap", "crawl")
    @classmethod
    def _http_urls(cls, value: list[str] | str | None) -> list[str] | str | None:
        for url in [value] if isinstance(value, str) else value or []:
            try:
                canonical_url(url)
            except ValueError as exc:
                raise ValueError(f"{url!r} is not a valid URL: {exc}") from None
            parts = urlsplit(url)
            if parts.scheme.lower() not in ALLOWED_SCHEMES or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL")
            if parts.username or parts.password:
                raise ValueError(f"{url!r}: credentials in URLs are not supported (they would end up in the index)")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> WebConfig:
        given = [name for name in ("urls", "sitemap", "crawl") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of urls, sitemap or crawl, not {' and '.join(given) or 'none'}")
        return self


class _Failed(Exception):
    """One URL could not be read. `keep`: it may well still exist, as opposed to gone
    (404/410) or off-limits (robots.txt disallow, a type ragline cannot parse)."""

    def __init__(self, reason: str, *, keep: bool = True):
        super().__init__(reason)
        self.keep = keep


def _extension(content_type: str, url: str) -> str | None:
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    if content_type in _GENERIC_TYPES and suffix in _URL_SUFFIXES:
        return suffix
    return _EXTENSIONS.get(content_type)


def _filename(url: str, extension: str) -> str:
    """A harmless file name: the URL's last path segment with the extension of its type."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", PurePosixPath(urlsplit(url).path).stem).strip("._")
    return (stem[:100] or "index") + extension


def _conditional_headers(version: str) -> dict[str, str]:
    """Validators for a conditional GET; a content-hash version has none."""
    if version.startswith(('"', 'W/"')):
        return {"If-None-Match": version}
    return {"If-Modified-Since": version} if parsedate(version) else {}


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value for name, value in attrs if name == "href" and value]


def _links(html: bytes, base: str) -> Iterator[str]:
    parser = _LinkParser()
    parser.feed(html.decode("utf-8", "replace"))
    parser.close()
    for href in parser.hrefs:
        try:
            yield canonical_url(urljoin(base, href.strip()))
        except ValueError:
            continue


def _parse_sitemap(body: bytes, limit: int) -> tuple[bool, list[str]]:
    """(is it an index, its <loc> URLs) for a sitemap, plain or gzipped."""
    if body[:2] == b"\x1f\x8b":
        body = zlib.decompressobj(wbits=31).decompress(body, limit + 1)
        if len(body) > limit:
            raise _Failed(f"unpacks to more than max_bytes ({limit} bytes)")
    try:
        root = ET.fromstring(body)  # expat >= 2.4.1 bounds entity expansion; no external entities
    except ET.ParseError as exc:
        raise _Failed(f"not a sitemap: {exc}") from None
    # Only <url><loc> / <sitemap><loc>: extensions nest their own <loc> (image:loc) deeper.
    locs = [loc.text.strip() for entry in root for loc in entry if loc.tag.rsplit("}", 1)[-1] == "loc" and loc.text]
    return root.tag.endswith("sitemapindex"), locs


class WebConnector(Connector):
    def __init__(self, config: WebConfig):
        self.config = config
        self.errors: list[tuple[str, str]] = []
        # Ids that may still exist but could not be read this run, known or not: the pipeline
        # hides documents of an outdated index fingerprint from `known`, and they too must stay.
        self.keep: set[str] = set()
        self._robots: dict[str, RobotFileParser | str] = {}  # origin -> rules, or why they are unavailable
        self._last_request: dict[str, float] = {}
        self._client: httpx.Client | None = None
        if config.name:
            self._source = f"web:{config.name}"
        elif config.urls is not None:
            listing = "\n".join(sorted({canonical_url(url) for url in config.urls}))
            self._source = f"web:urls:{sha256_text(listing)[:16]}"
        else:
            mode = "sitemap" if config.sitemap else "crawl"
            self._source = f"web:{mode}:{canonical_url(config.sitemap or config.crawl or '')}"

    @property
    def source(self) -> str:
        return self._source

    def items(self, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        """The site's documents; read `errors` and `keep` once iteration is over."""
        self.errors, self.keep, self._robots, self._last_request = [], set(), {}, {}
        # No keep-alive: each connection is pinned to one vetted IP, and a TLS connection made
        # for one host name must not be reused for another name that resolves to the same IP.
        limits = httpx.Limits(max_keepalive_connections=0)
        headers = {"User-Agent": self.config.user_agent}
        with httpx.Client(timeout=self.config.timeout, headers=headers, limits=limits) as client:
            self._client = client
            try:
                yield from self._crawl(known) if self.config.crawl else self._listed(known)
            finally:
                self._client = None

    def _listed(self, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        partial = False
        if self.config.urls is not None:
            urls = [canonical_url(url) for url in self.config.urls]
        else:
            urls, partial = self._sitemap_urls()
        seen: set[str] = set()
        for url in dict.fromkeys(urls):
            item = self._document(url, known)
            if item is not None:
                seen.add(url)
                yield item
        if partial:
            self._keep_unseen(known, seen)

    def _sitemap_urls(self) -> tuple[list[str], bool]:
        """Page URLs of the sitemap and its nested sitemaps, and whether a nested one failed
        (the listing is then partial)."""
        root = canonical_url(self.config.sitemap or "")
        pending, visited, pages, partial = deque([(root, 0)]), {root}, [], False
        while pending:
            url, level = pending.popleft()
            try:
                is_index, locs = _parse_sitemap(self._get_body(url), self.config.max_bytes)
                if is_index and level >= MAX_SITEMAP_NESTING:
                    raise _Failed(f"sitemap indexes nested more than {MAX_SITEMAP_NESTING} deep")
            except _Failed as failure:
                if url == root:
                    raise ConnectorError(f"sitemap {url} cannot be read: {failure}") from None
                self.errors.append((url, f"sitemap: {failure}"))
                partial = True
                continue
            for loc in locs:
                try:
                    loc = canonical_url(loc)
                except ValueError:
                    self.errors.append((loc, f"invalid URL in sitemap {url}"))
                    continue
                if not is_index:
                    pages.append(loc)
                elif loc not in visited:
                    visited.add(loc)
                    pending.append((loc, level + 1))
        return pages, partial

    def _crawl(self, known: Mapping[str, KnownDocument]) -> Iterator[SourceItem]:
        """Breadth-first along same-origin links. Pages whose links are still needed are
        fetched unconditionally: a 304 has no links in it."""
        start = canonical_url(self.config.crawl or "")
        origin = urlsplit(start)[:2]
        queue, queued, seen, fetched = deque([(start, 0)]), {start}, set(), 0
        while queue and fetched < self.config.max_pages:
            url, depth = queue.popleft()
            fetched += 1
            follow = depth < self.config.max_depth
            item = self._document(url, known, conditional=not follow)
            if item is None:
                if url == start:
                    raise ConnectorError(f"crawl start {url} cannot be read: {self.errors[-1][1]}")
                continue
            seen.add(url)
            yield item
            if follow and item.content is not None and (item.filename or "").endswith(".html"):
                for link in _links(item.content, item.metadata["url"]):
                    if urlsplit(link)[:2] == origin and link not in queued:
                        queued.add(link)
                        queue.append((link, depth + 1))
        # Cut short by max_pages, or a page that failed may have linked to known ones.
        if queue or self.keep:
            self._keep_unseen(known, seen)

    def _keep_unseen(self, known: Mapping[str, KnownDocument], seen: set[str]) -> None:
        """A partial listing proves nothing about what it missed: keep all of that."""
        failed = {url for url, _ in self.errors}  # already in `keep` unless gone
        self.keep |= {doc_id for doc_id in known if doc_id not in seen and doc_id not in failed}

    def _document(self, url: str, known: Mapping[str, KnownDocument], *, conditional: bool = True) -> SourceItem | None:
        """The item for `url`, or None with the failure recorded in `errors` / `keep`."""
        try:
            return self._fetch_document(url, known.get(url), conditional)
        except _Failed as failure:
            self.errors.append((url, str(failure)))
            if failure.keep:
                self.keep.add(url)
            return None

    def _fetch_document(self, url: str, previous: KnownDocument | None, conditional: bool) -> SourceItem:
        self._check_robots(url)
        headers = _conditional_headers(previous.version) if previous and conditional else {}
        with self._get(url, headers) as (final_url, response):
            status = response.status_code
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            metadata = {"url": final_url, "content_type": content_type or None}
            common = {"document_id": url, "source": self.source, "metadata": metadata}
            if status == 304 and previous and headers:
                return SourceItem(**common, version=previous.version, content_hash=previous.content_hash)
            if status in (404, 410):
                raise _Failed(f"HTTP {status}: gone", keep=False)
            if not response.is_success:
                raise _Failed(f"HTTP {status}")
            extension = _extension(content_type, final_url)
            if extension is None:
                raise _Failed(f"unsupported content type {content_type or '(none)'}", keep=False)
            body = self._read(response)
            content_hash = sha256_bytes(body)
            version = response.headers.get("etag") or response.headers.get("last-modified") or content_hash
            filename = _filename(final_url, extension)
            return SourceItem(**common, version=version, content_hash=content_hash, content=body, filename=filename)

    def _check_robots(self, url: str) -> None:
        if not self.config.respect_robots_txt:
            return
        scheme, netloc = urlsplit(url)[:2]
        origin = f"{scheme}://{netloc}"
        if origin not in self._robots:
            self._robots[origin] = self._load_robots(origin)
        rules = self._robots[origin]
        if isinstance(rules, str):
            raise _Failed(f"robots.txt unavailable: {rules}")
        if not rules.can_fetch(ROBOTS_AGENT, url):
            raise _Failed("disallowed by robots.txt", keep=False)

    def _load_robots(self, origin: str) -> RobotFileParser | str:
        """Rules as RFC 9309 has it: a 4xx means there are none; a 5xx or no answer means
        stay away for now."""
        rules = RobotFileParser()
        try:
            with self._get(f"{origin}/robots.txt") as (_, response):
                if 400 <= response.status_code < 500:
                    rules.allow_all = True
                elif response.is_success:
                    rules.parse(self._read(response).decode("utf-8", "replace").splitlines())
                else:
                    return f"HTTP {response.status_code}"
        except _Failed as failure:
            return str(failure)
        return rules

    def _get_body(self, url: str) -> bytes:
        with self._get(url) as (_, response):
            if not response.is_success:
                raise _Failed(f"HTTP {response.status_code}")
            return self._read(response)

    @contextmanager
    def _get(self, url: str, headers: dict[str, str] | None = None) -> Iterator[tuple[str, httpx.Response]]:
        """GET with redirects followed by hand, so the guard vets every hop before connecting;
        gives the final URL and the response with its body still unread."""
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(url, headers or {})
            if not response.has_redirect_location:
                break
            response.close()
            url = urldefrag(urljoin(url, response.headers["location"])).url
        else:
            raise _Failed(f"more than {MAX_REDIRECTS} redirects")
        try:
            yield url, response
        finally:
            response.close()

    def _send(self, url: str, headers: dict[str, str]) -> httpx.Response:
        """One request, connected to the very address the SSRF guard vetted (no second DNS
        lookup an attacker could answer differently)."""
        assert self._client is not None, "requests are only made inside items()"
        try:
            target = httpx.URL(url)
            host = target.raw_host.decode("ascii")
            port = target.port or _DEFAULT_PORTS.get(target.scheme, 0)
            allow_private, allowed_hosts = self.config.allow_private_addresses, self.config.allowed_hosts
            address = resolve_safe(target.scheme, host, port, allow_private=allow_private, allowed_hosts=allowed_hosts)
        except UnsafeURL as exc:
            raise _Failed(str(exc)) from None
        except (httpx.InvalidURL, ValueError) as exc:
            raise _Failed(f"invalid URL {url!r}: {exc}") from None
        except OSError as exc:
            raise _Failed(f"cannot resolve {host}: {exc}") from None
        self._wait_turn(host)
        request = self._client.build_request(
            "GET",
            target.copy_with(host=address),
            headers={**headers, "Host": target.netloc.decode("ascii")},
            extensions={"sni_hostname": host},  # TLS still verifies the certificate for the name
        )
        try:
            return self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise _Failed("timed out") from None
        except httpx.HTTPError as exc:
            raise _Failed(f"request failed: {exc}") from None

    def _wait_turn(self, host: str) -> None:
        """At most `rate_limit_per_second` requests to one host."""
        last = self._last_request.get(host)
        if last is not None:
            time.sleep(max(0.0, last + 1.0 / self.config.rate_limit_per_second - time.monotonic()))
        self._last_request[host] = time.monotonic()

    def _read(self, response: httpx.Response) -> bytes:
        """The body, streamed so that an oversized or trickling one is cut off early."""
        limit = self.config.max_bytes
        deadline = time.monotonic() + self.config.timeout
        chunks, size = [], 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise _Failed(f"larger than max_bytes (more than {limit} bytes)")
                if time.monotonic() > deadline:
                    raise _Failed("timed out reading the body")
                chunks.append(chunk)
        except httpx.TimeoutException:
            raise _Failed("timed out") from None
        except httpx.HTTPError as exc:
            raise _Failed(f"download failed: {exc}") from None
        return b"".join(chunks)
