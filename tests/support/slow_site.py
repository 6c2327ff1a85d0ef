"""A slow website on 127.0.0.1 for runs that must take time: HTML pages answered after
`delay` seconds each, counting how many requests were in flight at once (a run that
overlapped another would show two)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SlowSite:
    def __init__(self, pages: int = 3, delay: float = 0.0) -> None:
        self.pages, self.delay = pages, delay
        self.requests = self.in_flight = self.most_in_flight = 0
        lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    site.requests += 1
                    site.in_flight += 1
                    site.most_in_flight = max(site.most_in_flight, site.in_flight)
                try:
                    time.sleep(site.delay)
                    body = f"<html><body><p>Page {self.path} is about lighthouse number {self.path[-1]}.</p></body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body.encode())))
                    self.end_headers()
                    self.wfile.write(body.encode())
                finally:
                    with lock:
                        site.in_flight -= 1

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # a client that went away is fine
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def source(self, **schedule) -> dict:
        """A `[[sources]]` entry reading every page (named `slow-site`)."""
        port = self.server.server_address[1]
        return {"kind": "web", "name": "slow-site", "urls": [f"http://127.0.0.1:{port}/page/{n}" for n in range(self.pages)],
                "allow_private_addresses": True, "respect_robots_txt": False, "rate_limit_per_second": 1000,
                **schedule}  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
