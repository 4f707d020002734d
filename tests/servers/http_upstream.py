"""Loopback HTTP servers for upstream files (pytest plugin: ``-p tests.servers.http_upstream``).

- ``upstream_dir``: ../shared/upstream (byte-exact upstream files laid out
  <component>/<version>/<path>, the mirror layout of ``upstream.base_url``);
- ``upstream_server`` (session): a real ``http.server`` in a thread serving it, with
  HTTP Range (206 + Content-Range), and a request log;
- ``http_server``: a factory of more servers over any directory (a tampered copy, ...),
  stopped after the test; ``cut_once`` makes a path's first answer stop half-way, the
  way a dropped connection does;
- ``forward_proxy``: a real HTTP forward proxy (absolute-URI requests), to prove that
  ``http_proxy`` is honoured;
- ``upstream_cache``: an empty cache for the test (``CUBEINSTALL_CACHE``) and the mirror
  pointed at ``upstream_server`` (``CUBEINSTALL_UPSTREAM_URL``);
- ``session_upstream_cache`` (session, autouse): a cache filled from the test data that
  every test renders from (never the user's ~/.cache); ``seeded_cache`` points a test at it;
- ``fetched_cache`` (session): every catalog file fetched over HTTP from ``upstream_server``.

A server that cannot start fails the test; nothing is skipped.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

SHARED_UPSTREAM = Path(__file__).resolve().parents[2].parent / "shared" / "upstream"


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    status: int = 0


class _Threaded:
    """A ThreadingHTTPServer on a free loopback port, served from a daemon thread."""

    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _serve(self, handler, name: str):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name=name).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class HttpServer(_Threaded):
    root: Path
    cut_once: set[str] = field(default_factory=set)  # paths whose next answer stops half-way
    ranges: bool = True
    requests: list[Request] = field(default_factory=list)

    def start(self) -> "HttpServer":
        return self._serve(_handler(self), f"http-{self.root.name}")

    def file_requests(self) -> list[Request]:
        return [r for r in self.requests if r.method == "GET"]


def _handler(server: HttpServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            record = Request("GET", self.path, self.headers.get("Range"))
            server.requests.append(record)
            relative = urllib.parse.unquote(self.path.split("?")[0]).lstrip("/")
            target = (server.root / relative).resolve()
            if not target.is_file() or server.root.resolve() not in target.parents:
                record.status = 404
                self.send_error(404)
                return
            data = target.read_bytes()
            start = 0
            if server.ranges and record.range and record.range.startswith("bytes="):
                start = int(record.range[6:].split("-")[0])
                if start >= len(data):
                    record.status = 416
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                record.status = 206
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                record.status = 200
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes" if server.ranges else "none")
            self.end_headers()
            if self.path in server.cut_once:
                server.cut_once.discard(self.path)
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the peer sees the body end early
                return
            self.wfile.write(body)

    return Handler


@dataclass
class ForwardProxy(_Threaded):
    """Relays absolute-URI GETs (what a client sends to an http_proxy) and logs them."""

    seen: list[str] = field(default_factory=list)

    def start(self) -> "ForwardProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                proxy.seen.append(self.path)
                target = urllib.parse.urlsplit(self.path)
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("proxy-connection", "connection", "host")}
                connection.request("GET", target.path or "/", headers=headers)
                answer = connection.getresponse()
                body = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                connection.close()

        return self._serve(Handler, "proxy")


@pytest.fixture(scope="session")
def upstream_dir() -> Path:
    if not (SHARED_UPSTREAM / "catalog.json").is_file():
        pytest.fail(f"no upstream test data at {SHARED_UPSTREAM} (../shared/upstream of the "
                    "repository): the upstream tests need its byte-exact files", pytrace=False)
    return SHARED_UPSTREAM


def _started(server):
    try:
        return server.start()
    except OSError as exc:
        pytest.fail(f"cannot start a loopback HTTP server: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def upstream_server(upstream_dir: Path) -> Iterator[HttpServer]:
    server = _started(HttpServer(upstream_dir))
    yield server
    server.stop()


@pytest.fixture
def http_server() -> Iterator:
    started: list[HttpServer] = []

    def make(root: Path, **options) -> HttpServer:
        server = _started(HttpServer(root, **options))
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    proxy = _started(ForwardProxy())
    yield proxy
    proxy.stop()


@pytest.fixture
def upstream_cache(tmp_path: Path, upstream_server: HttpServer, monkeypatch) -> Path:
    """An empty cache of this test's own, and the mirror pointed at ``upstream_server``."""
    root = tmp_path / "cache"
    monkeypatch.setenv("CUBEINSTALL_CACHE", str(root))
    monkeypatch.setenv("CUBEINSTALL_UPSTREAM_URL", upstream_server.url)
    return root


@pytest.fixture(scope="session")
def fetched_cache(upstream_server: HttpServer, tmp_path_factory) -> Path:
    """A cache holding every file of the catalog, fetched once per session from the server."""
    import io

    from cubeinstall.core.output import Output
    from cubeinstall.upstream import catalog
    from cubeinstall.upstream.cache import Cache
    from cubeinstall.upstream.fetch import fetch_all

    root = tmp_path_factory.mktemp("fetched-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CUBEINSTALL_UPSTREAM_URL", upstream_server.url)
        files = [item for name in catalog.components() for item in catalog.resolve(None, name).files]
        fetch_all(files, Cache(root / "upstream"), Output(json_mode=True, stream=io.StringIO()))
    return root


def component_site(directory: Path, kubeconfig: Path, **components) -> Path:
    """The example site pointed at a test cluster.

    gates.webhooks is skip: kwok pods are Ready but serve no traffic, so no admission
    webhook can ever answer; every other gate (CRDs Established, Deployments
    Available, Jobs complete) stays on.
    """
    from tests.helpers import example_site_data, write_site

    data = example_site_data()
    data["clusters"] = [{"name": "main", "kubeconfig": str(kubeconfig)}]
    data["gates"] = {"webhooks": "skip"}
    data["timeouts"] = {"object_seconds": 180, "stage_seconds": 900}
    data["components"] = {**data.get("components", {}), **components}
    return write_site(directory, data)


@pytest.fixture
def cubeinstall_cli(capsys):
    """Run `cubeinstall --json ARGS` in this process; returns (exit code, stdout, stderr)."""
    from tests.helpers import run_cli

    return lambda *args: run_cli(["--json", *args], capsys)


def seed(root: Path, upstream_dir: Path) -> Path:
    """Fill a cache root straight from the test data (no HTTP), as `bundle load` would."""
    import shutil

    from cubeinstall.upstream import catalog
    from cubeinstall.upstream.cache import Cache

    cache = Cache(root / "upstream")
    for name, entry in catalog.components().items():
        for path, digest in entry.files.items():
            cache.path(digest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(upstream_dir / name / entry.version / path, cache.path(digest))
    return root


@pytest.fixture(scope="session", autouse=True)
def session_upstream_cache(upstream_dir: Path, tmp_path_factory) -> Iterator[Path]:
    """Every test renders from a cache of its session, never the user's ~/.cache.

    Stages that install upstream files render from the cache only, so `render`, offline
    plans and image inventories of the example site need it filled.
    """
    import os

    root = seed(tmp_path_factory.mktemp("upstream-cache"), upstream_dir)
    before = os.environ.get("CUBEINSTALL_CACHE")
    os.environ["CUBEINSTALL_CACHE"] = str(root)
    yield root
    if before is None:
        os.environ.pop("CUBEINSTALL_CACHE", None)
    else:
        os.environ["CUBEINSTALL_CACHE"] = before


@pytest.fixture
def seeded_cache(session_upstream_cache: Path, monkeypatch) -> Path:
    """The session's filled cache, for this test (whatever an earlier fixture pointed at)."""
    monkeypatch.setenv("CUBEINSTALL_CACHE", str(session_upstream_cache))
    return session_upstream_cache
