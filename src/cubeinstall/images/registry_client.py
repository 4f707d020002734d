"""A small Docker Registry HTTP API v2 client: "is this manifest there, with which digest?".

Copies are skopeo's job; this client answers the cheap questions the mirror asks for
every image on every run (one manifest HEAD each) and checks access up front so that
a wrong password or an untrusted certificate is reported once, clearly, before any
copy starts. It speaks Basic auth (docker-registry with htpasswd) and the Bearer
token flow (Harbor, Docker Hub, quay, gcr), verifies TLS with the system CAs plus the
site's CA file, and for "insecure" registries tries HTTPS without verification, then
plain HTTP, like Docker does.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from functools import lru_cache
from pathlib import Path

from cubeinstall.core.errors import CubeError

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_API_HOSTS = {"docker.io": "registry-1.docker.io"}
_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_ANY_SCOPE = "*"  # key of Basic credentials, valid for every repository
_NETWORK_ERRORS = (OSError, http.client.HTTPException)  # OSError covers ssl, socket, URLError


class RegistryError(CubeError):
    """A registry answered badly or not at all; the message names it."""


class RegistryAuthError(RegistryError):
    pass


class RegistryTLSError(RegistryError):
    pass


class RegistryUnreachable(RegistryError):
    """No answer at all (name not resolved, connection refused or timed out)."""


@dataclass(frozen=True)
class Endpoint:
    """How to reach one registry."""

    host: str  # host[:port] as in image references
    username: str | None = None
    password: str | None = None  # clear value, only ever sent in an Authorization header
    ca_file: Path | None = None
    insecure: bool = False  # no certificate verification, plain HTTP allowed

    def __repr__(self) -> str:  # never show the password
        return f"Endpoint({self.host}, user={self.username!r}, insecure={self.insecure})"

    @property
    def who(self) -> str:
        return f"user {self.username!r}" if self.username else "anonymous access"


class RegistryClient:
    def __init__(self, endpoint: Endpoint, timeout: float = 30.0, attempts: int = 3):
        self.endpoint = endpoint
        self.timeout = timeout
        self.attempts = attempts
        self._api_host = _API_HOSTS.get(endpoint.host, endpoint.host)
        self._scheme: str | None = None
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # per-thread kept-alive connections
        self._tls = self._tls_context()

    # -- public ------------------------------------------------------------------

    def ping(self) -> None:
        """Check reachability, TLS and credentials (GET /v2/); raise a RegistryError if not."""
        status, _, _ = self._call("GET", "/v2/", scope=None)
        if status != 200:
            raise RegistryError(f"registry {self.endpoint.host} answered HTTP {status} to /v2/",
                                hint="is this a container registry (Docker Registry API v2)?")

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """Digest of a manifest (tag or digest), or None when the registry does not have it."""
        path = f"/v2/{repository}/manifests/{reference}"
        scope = f"repository:{repository}:pull"
        status, headers, _ = self._call("HEAD", path, scope)
        if status == 404:
            return None
        if status != 200:
            raise RegistryError(f"registry {self.endpoint.host}: HTTP {status} for "
                                f"{repository}:{reference}")
        digest = headers.get("Docker-Content-Digest")
        if digest:
            return digest
        status, _, body = self._call("GET", path, scope)  # some registries omit the header on HEAD
        if status == 404:
            return None
        return "sha256:" + hashlib.sha256(body).hexdigest()

    # -- HTTP with auth and retries ----------------------------------------------------

    def _call(self, method: str, path: str, scope: str | None) -> tuple[int, Message, bytes]:
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        token = self._tokens.get(scope or "") or self._tokens.get(_ANY_SCOPE)
        if token:
            headers["Authorization"] = token
        status, reply, body = self._send(method, path, headers)
        if status != 401:
            return status, reply, body
        headers["Authorization"] = self._authorize(reply.get("WWW-Authenticate", ""), scope)
        status, reply, body = self._send(method, path, headers)
        if status == 401:
            raise self._auth_error()
        return status, reply, body

    def _authorize(self, challenge: str, scope: str | None) -> str:
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if not self.endpoint.username:
                raise self._auth_error()
            value, key = "Basic " + self._basic(), _ANY_SCOPE  # the same for every repository
        elif scheme == "bearer":
            value = "Bearer " + self._fetch_token(dict(_CHALLENGE_PARAM.findall(challenge)), scope)
            key = scope or ""
        else:
            raise RegistryError(f"registry {self.endpoint.host} asks for unsupported "
                                f"authentication {challenge!r}")
        with self._lock:
            self._tokens[key] = value
        return value

    def _fetch_token(self, params: dict[str, str], scope: str | None) -> str:
        realm = params.pop("realm", None)
        if not realm:
            raise RegistryError(f"registry {self.endpoint.host} sent a Bearer challenge "
                                "without a realm")
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        if scope:
            query["scope"] = scope
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {"Authorization": "Basic " + self._basic()} if self.endpoint.username else {}
        try:
            status, _, body = self._open_url(urllib.request.Request(url, headers=headers))
        except _NETWORK_ERRORS as exc:
            raise self._connection_error(exc) from None
        if status == 401:
            raise self._auth_error()
        if status != 200:
            raise RegistryError(f"token service of {self.endpoint.host} answered HTTP {status}")
        answer = json.loads(body or b"{}")
        token = answer.get("token") or answer.get("access_token")
        if not token:
            raise RegistryError(f"token service of {self.endpoint.host} returned no token")
        return token

    def _send(self, method: str, path: str, headers: dict) -> tuple[int, Message, bytes]:
        delay = 0.5
        for attempt in range(1, self.attempts + 1):
            try:
                status, reply, body = self._send_once(method, path, headers)
            except _NETWORK_ERRORS as exc:
                if attempt == self.attempts or _not_worth_retrying(_cause(exc)):
                    raise self._connection_error(exc) from None
                status, reply, body = 0, Message(), b""
            if status not in _TRANSIENT_STATUS and status != 0:
                return status, reply, body
            if attempt == self.attempts:
                return status, reply, body
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _send_once(self, method: str, path: str, headers: dict) -> tuple[int, Message, bytes]:
        if self._scheme is None and self.endpoint.insecure:
            try:
                return self._request_with("https", method, path, headers)
            except _NETWORK_ERRORS:
                # an insecure registry may speak plain HTTP (Docker falls back the same way)
                return self._request_with("http", method, path, headers)
        return self._request_with(self._scheme or "https", method, path, headers)

    def _request_with(self, scheme: str, method: str, path: str,
                      headers: dict) -> tuple[int, Message, bytes]:
        """One request on this thread's kept-alive connection (one TLS handshake per thread,
        not per image: the re-run of a mirror is a few hundred HEADs)."""
        for fresh in (False, True):
            connection = self._connection(scheme, fresh)
            try:
                connection.request(method, path, headers=headers)
                reply = connection.getresponse()
                body = reply.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()  # a kept-alive connection the server closed: once more
                if fresh:
                    raise
            except BaseException:
                connection.close()
                self._local.connections.pop(scheme, None)
                raise
        self._scheme = scheme
        if reply.status in (301, 302, 303, 307, 308) and reply.headers.get("Location"):
            location = urllib.parse.urljoin(f"{scheme}://{self._api_host}{path}",
                                            reply.headers["Location"])
            return self._open_url(urllib.request.Request(location, headers=headers, method=method))
        return reply.status, reply.headers, body

    def _connection(self, scheme: str, fresh: bool) -> http.client.HTTPConnection:
        connections = self._local.__dict__.setdefault("connections", {})
        if fresh or scheme not in connections:
            if scheme == "https":
                connections[scheme] = http.client.HTTPSConnection(
                    self._api_host, timeout=self.timeout, context=self._tls)
            else:
                connections[scheme] = http.client.HTTPConnection(self._api_host,
                                                                 timeout=self.timeout)
        return connections[scheme]

    def _open_url(self, request: urllib.request.Request) -> tuple[int, Message, bytes]:
        """Requests to other hosts (token service, redirects): no connection reuse needed."""
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._tls) as reply:
                return reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    # -- helpers ---------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        try:
            return _tls_context(self.endpoint.insecure, self.endpoint.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise RegistryTLSError(
                f"cannot read the CA file {self.endpoint.ca_file} of registry "
                f"{self.endpoint.host}: {exc}",
                hint="registry.ca_file must be a PEM certificate") from None

    def _basic(self) -> str:
        pair = f"{self.endpoint.username}:{self.endpoint.password or ''}"
        return base64.b64encode(pair.encode()).decode()

    def _auth_error(self) -> RegistryAuthError:
        return RegistryAuthError(
            f"registry {self.endpoint.host} refused {self.endpoint.who}: "
            "authentication failed (wrong user name or password?)",
            hint="check registry.username and registry.password in site.yaml")

    def _connection_error(self, exc: BaseException) -> RegistryError:
        reason = _cause(exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            return RegistryTLSError(
                f"registry {self.endpoint.host}: its TLS certificate is not trusted "
                f"({reason.verify_message})",
                hint="set registry.ca_file to the CA that signed it, "
                     "or registry.insecure: true to skip verification")
        return RegistryUnreachable(f"cannot reach registry {self.endpoint.host}: {reason}",
                                   hint="check the host and port, and that the registry is running")


# The resolver says the name does not exist (an air-gapped site asking a public registry):
# asking again half a second later gets the same answer. A temporary DNS failure is retried.
_NO_SUCH_NAME = {code for code in (getattr(socket, "EAI_NONAME", None),
                                   getattr(socket, "EAI_NODATA", None)) if code is not None}


def _not_worth_retrying(reason: BaseException) -> bool:
    return isinstance(reason, ssl.SSLError) or (
        isinstance(reason, socket.gaierror) and reason.errno in _NO_SUCH_NAME)


def _cause(exc: BaseException) -> BaseException:
    """urllib wraps network errors in URLError(reason); http.client raises them directly."""
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        return exc.reason
    return exc


@lru_cache(maxsize=8)
def _tls_context(insecure: bool, ca_file: Path | None) -> ssl.SSLContext:
    """One context per setting for the process: loading the system CA store takes tens of
    milliseconds, and plan, mirror and verify each make clients. Contexts are thread-safe."""
    if insecure:  # verifies nothing: no CA store needed
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=str(ca_file))
    return context
