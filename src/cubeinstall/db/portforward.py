"""Reach an in-cluster Service through a Kubernetes API port-forward, on a loopback port.

``forward_service(...)`` is a context manager yielding a ``LoopbackBridge``:
a listening socket on 127.0.0.1 (a free port) where each accepted
connection gets its own port-forward stream (official client,
``kubernetes.stream.portforward``) to a ready pod behind the Service. So
pymysql, or the Redis gate, connect to ``bridge.host:bridge.port`` as to any
server, and the user opens nothing (no kubectl, no NodePort).

The pod is looked up per connection from the Service's selector, so a
restarted pod is picked up by the next connection. What went wrong on the
Kubernetes side (no Service, no ready pod, the API server could not reach
the kubelet) is kept in ``last_failure`` for the caller's error message,
since the client only sees a closed connection.

Known limitation (seen on the real-node e2e): with two streams open at once, the
second one sometimes never delivers its first bytes to the server (kubectl
port-forward does not stall on the same pod), so callers keep to one connection at
a time (db/databases.py tries the app user's login before the root connection).
"""

from __future__ import annotations

import contextlib
import json
import math
import select
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from cubeinstall.core.errors import CubeError
from cubeinstall.core.outage import Outage

_CHUNK = 65536
# Connect, read (seconds) of the two small lookups: the official client waits forever
# without one (a server that accepts and never answers, not even TLS, hangs the run).
LOOKUP_TIMEOUT = (10, 10)


class ForwardError(CubeError):
    """The Service cannot be reached through the Kubernetes API.

    ``permanent`` errors (no such Service, no selector) cannot heal by waiting;
    the others (no ready pod yet, kubelet unreachable) may.
    """

    def __init__(self, message: str, hint: str | None = None, permanent: bool = False):
        super().__init__(message, hint)
        self.permanent = permanent


class ServiceMissing(ForwardError):
    """The Service does not exist (yet): the stage that deploys it has not run."""


@dataclass(frozen=True)
class Upstream:
    sock: Any  # a socket-like object (the port-forward's socketpair end)
    close: Callable[[], None]
    error: Callable[[], str | None] = lambda: None


class LoopbackBridge:
    """Listen on 127.0.0.1; pipe every accepted connection to a fresh upstream."""

    def __init__(self, open_upstream: Callable[[], Upstream], label: str):
        self._open_upstream = open_upstream
        self.label = label
        self.last_failure: Exception | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._open: set[Any] = set()
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"bridge {label}")

    def __enter__(self) -> "LoopbackBridge":
        self._accepter.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        # close() alone does not wake a thread blocked in accept(); shutdown() does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        if self._accepter.is_alive():
            self._accepter.join(5)
        with self._lock:
            closers, self._open = list(self._open), set()
        for close in closers:
            with contextlib.suppress(Exception):
                close()

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = self._open_upstream()
        except Exception as exc:  # noqa: BLE001 - reported through last_failure
            self.last_failure = exc
            client.close()
            return
        closers = (client.close, upstream.close)
        with self._lock:
            self._open.update(closers)
        try:
            self._pump(client, upstream.sock)
        finally:
            with self._lock:
                self._open.difference_update(closers)
            client.close()
            upstream.close()
            error = upstream.error()
            if error:
                self.last_failure = ForwardError(f"port-forward {self.label}: {error.strip()}")

    def _pump(self, client: socket.socket, remote: Any) -> None:
        peers = {client.fileno(): (client, remote), remote.fileno(): (remote, client)}
        while not self._closing.is_set():
            try:
                readable, _, _ = select.select(list(peers), [], [], 0.5)
                for fileno in readable:
                    source, target = peers[fileno]
                    data = source.recv(_CHUNK)
                    if not data:
                        return
                    target.sendall(data)
            except (OSError, ValueError):
                return


def describe_address(host: str, port: int, bridge: LoopbackBridge | None) -> str:
    """How messages name a server: host:port, or the Service behind a bridge."""
    if bridge is not None:
        return f"{bridge.label} (port-forward via 127.0.0.1:{port})"
    return f"{host}:{port}"


# --- the Kubernetes side -------------------------------------------------------


def _api_message(exc: BaseException) -> str:
    """The API server's own words from an ApiException or a failed websocket upgrade.

    The client loses them on a failed upgrade (it raises AttributeError while
    decoding a body that is None), so the whole exception chain is searched
    for the Status message the server sent.
    """
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for link in chain:
        for text in (getattr(link, "body", None), getattr(link, "reason", None), str(link)):
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            if isinstance(text, str) and '"message"' in text:
                message = _status_message(text)
                if message:
                    return message
    return str(chain[-1]).strip() or type(chain[-1]).__name__


def _status_message(text: str) -> str | None:
    """The message of the JSON Status object embedded in ``text`` (after headers etc.)."""
    end = text.rfind("}") + 1
    start = text.find('{"')
    while start >= 0:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            return str(json.loads(text[start:end])["message"])
        start = text.find('{"', start + 1)
    return None


def _ready(pod: Any) -> bool:
    conditions = (pod.status.conditions or []) if pod.status else []
    return (pod.metadata.deletion_timestamp is None and pod.status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in conditions))


class ServiceTarget:
    """Which pod and container port stand behind ``namespace/service:port`` right now."""

    def __init__(self, core: Any, namespace: str, service: str, port: int,
                 outage: Outage | None = None):
        self.core, self.namespace, self.service, self.port = core, namespace, service, port
        # The API server's one budget in the run (core.outage.outage_of), or without one
        # the connection's deadline bounds a long outage; an API server never reached in
        # this run is given up after a few tries, not after the deadline.
        self.outage = outage or Outage(budget=math.inf)

    @property
    def name(self) -> str:
        return f"Service {self.namespace}/{self.service}"

    def resolve(self) -> tuple[str, int]:
        svc = self._call(f"read {self.name}",
                         lambda: self.core.read_namespaced_service(
                             self.service, self.namespace, _request_timeout=LOOKUP_TIMEOUT))
        selector = svc.spec.selector or {}
        if not selector:
            raise ForwardError(f"{self.name} has no pod selector; cannot port-forward to it",
                               permanent=True,
                               hint="use mode: external with the server's address instead")
        target: Any = self.port
        for svc_port in svc.spec.ports or []:
            if svc_port.port == self.port:
                target = svc_port.target_port or self.port
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        pods = self._call(f"list the pods of {self.name}", lambda: self.core.list_namespaced_pod(
            self.namespace, label_selector=label_selector,
            _request_timeout=LOOKUP_TIMEOUT)).items
        ready = sorted((p for p in pods if _ready(p)), key=lambda p: p.metadata.name)
        if not ready:
            seen = ", ".join(f"{p.metadata.name} ({p.status.phase})" for p in pods) or "none"
            raise ForwardError(
                f"{self.name}: no ready pod matches {label_selector} (pods: {seen})",
                hint=f"check `kubectl -n {self.namespace} get pods -l {label_selector}`")
        pod = ready[0]
        return pod.metadata.name, _container_port(pod, target)

    def _call(self, what: str, request: Callable[[], Any]) -> Any:
        from kubernetes.client.rest import ApiException

        if self.outage.given_up:
            raise ForwardError(f"cannot {what}: not asked: the Kubernetes API gave no answer "
                               f"earlier in this run ({self.outage.last_failure})", permanent=True,
                               hint="check the kubeconfig and that the cluster is up")
        try:
            result = request()
        except ApiException as exc:
            if exc.status:
                self.outage.answered()
            if exc.status == 404:
                raise ServiceMissing(f"{self.name} not found", permanent=True,
                                     hint="run the stage that deploys it first") from None
            raise ForwardError(f"cannot {what}: {_api_message(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - urllib3/TLS errors reaching the API server
            raise ForwardError(f"cannot {what}: the Kubernetes API is unreachable ({exc})",
                               permanent=not self.outage.allows_retry(True, failure=str(exc)),
                               hint="check the kubeconfig and that the cluster is up") from None
        self.outage.answered()
        return result


def _container_port(pod: Any, target: Any) -> int:
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod.spec.containers:
        for port in container.ports or []:
            if port.name == target:
                return port.container_port
    raise ForwardError(f"pod {pod.metadata.name} has no container port named {target!r}")


def _open_forward(core: Any, target: ServiceTarget) -> Upstream:
    from kubernetes.stream import portforward

    pod, port = target.resolve()
    try:
        forward = portforward(core.connect_get_namespaced_pod_portforward, pod,
                              target.namespace, ports=str(port))
    except Exception as exc:  # noqa: BLE001 - ApiException or websocket errors
        raise ForwardError(f"port-forward to pod {target.namespace}/{pod}:{port} failed: "
                           f"{_api_message(exc)}") from None
    return Upstream(forward.socket(port), forward.close, lambda: forward.error(port))


def api_client(kubeconfig: Path, context: str | None) -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=str(kubeconfig), context=context,
                                client_configuration=configuration, persist_config=False)
        configuration.retries = False  # no hidden urllib3 retries: core.outage decides
        return client.ApiClient(configuration)
    except Exception as exc:  # noqa: BLE001 - missing file, bad context, bad YAML
        raise ForwardError(f"cannot load kubeconfig {kubeconfig}"
                           f"{f' (context {context})' if context else ''}: {exc}", permanent=True,
                           hint="check clusters[0].kubeconfig/context in site.yaml or "
                                "pass --kubeconfig") from None


@contextlib.contextmanager
def forward_service(kubeconfig: Path, context: str | None, namespace: str, service: str,
                    port: int, outage: Outage | None = None) -> Iterator[LoopbackBridge]:
    """A loopback bridge to ``service.namespace:port`` for the duration of the block;
    ``outage``: the API server's budget in this run, shared with its other clients."""
    from kubernetes import client

    api = api_client(kubeconfig, context)
    core = client.CoreV1Api(api)
    target = ServiceTarget(core, namespace, service, port, outage)
    label = f"{service}.{namespace}:{port}"
    try:
        with LoopbackBridge(lambda: _open_forward(core, target), label) as bridge:
            yield bridge
    finally:
        api.close()
