"""A real HTTPS admission webhook on loopback (``-p tests.servers.webhook``).

kwok pods serve no traffic, so an in-cluster webhook can never answer on the
test cluster. This server plays the webhook instead: the API server calls it
through ``clientConfig.url``. It can be told to start listening late, which
is how the tests prove the engine waits for a webhook to serve.
Every AdmissionReview it receives is recorded; it allows everything.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.cluster.pki import CertificateAuthority
from tests.cluster.processes import free_port


@dataclass
class WebhookServer:
    port: int
    ca_pem: bytes
    reviews: list[dict] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _timer: threading.Timer | None = None
    _files: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/validate"

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca_pem).decode()

    def start_in(self, seconds: float) -> None:
        """Begin listening ``seconds`` from now (until then: connection refused)."""
        self._timer = threading.Timer(seconds, self._serve)
        self._timer.daemon = True
        self._timer.start()

    def _serve(self) -> None:
        reviews = self.reviews

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reviews.append(review)
                answer = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                     "response": {"uid": review["request"]["uid"],
                                                  "allowed": True}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        directory = Path(self._files.name)
        context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._files is not None:
            self._files.cleanup()


def make_webhook_server() -> WebhookServer:
    ca = CertificateAuthority("cubeinstall-test-webhook-ca")
    leaf = ca.issue("127.0.0.1", ip_addresses=("127.0.0.1",), server=True)
    files = tempfile.TemporaryDirectory(prefix="cubeinstall-webhook-")
    (Path(files.name) / "tls.crt").write_bytes(leaf.cert_pem)
    (Path(files.name) / "tls.key").write_bytes(leaf.key_pem)
    return WebhookServer(free_port(), ca.cert_pem, _files=files)


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    """A loopback HTTPS webhook, not yet listening: call ``start_in(seconds)``."""
    server = make_webhook_server()
    try:
        yield server
    finally:
        server.stop()
