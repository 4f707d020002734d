"""The one place that talks to a Kubernetes API server.

Discovery goes through the official DynamicClient with a cache file per
cluster (keyed by server address and CA, so two test clusters that reuse a
port never share one), invalidated after CRDs change. Requests go straight
to the REST client with plain dicts: the dynamic client's ResourceInstance
wrapping costs more than the request for megabyte CRDs. Every failure
leaves this module as a typed ``KubeError``.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient, Resource, ResourceList
from kubernetes.dynamic.discovery import LazyDiscoverer
from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError

from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import ConfigError
from cubeinstall.core.outage import outage_of
from cubeinstall.kube.errors import KubeError, NotFound, Unreachable, Unsupported, from_status
from cubeinstall.kube.objects import FIELD_MANAGER
from cubeinstall.kube.retry import Outage, unserved_message
from cubeinstall.site.kubeconfigs import SITE_ORIGIN, hint_for

REQUEST_TIMEOUT = (10, 120)  # connect, read (seconds)
OUTAGE_SECONDS = 300  # default of timeouts.object_seconds: see retry.Outage
POOL_SIZE = 16
UNREACHABLE_HINT = "check that the cluster is up and the kubeconfig points to it"
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
AGGREGATED_DISCOVERY = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


@dataclass(frozen=True)
class ApiResource:
    group_version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return self.group_version.rpartition("/")[0]

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/api/{self.group_version}" if not self.group else f"/apis/{self.group_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


def discovery_cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "cubeinstall" / "discovery"


class KubeClient:
    """Typed requests to one cluster; safe to share between threads."""

    def __init__(self, api_client: Any, *, pool_size: int = POOL_SIZE,
                 timeout: tuple[float, float] = REQUEST_TIMEOUT,
                 outage_seconds: float = OUTAGE_SECONDS):
        configuration = copy.deepcopy(api_client.configuration)
        configuration.connection_pool_maxsize = pool_size
        # No retries inside urllib3 (it would try 4 times, logging each): kube/retry.py
        # decides, with one budget for the cluster (``outage``).
        configuration.retries = False
        self.outage = Outage(outage_seconds)
        self.api = k8s_client.ApiClient(configuration)
        self.host = configuration.host
        self._pool = self.api.rest_client.pool_manager.connection_from_url(self.host)
        self._base_path = urlsplit(self.host).path.rstrip("/")
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        # Until the server has answered once in this run a read waits no longer than a
        # connect: one that accepts connections and never answers (not even TLS) is given up
        # after the first-contact tries, not after minutes. The first requests (discovery)
        # are small.
        self._first_timeout = urllib3.Timeout(connect=timeout[0], read=timeout[0])
        self._lock = threading.RLock()
        self._dynamic: DynamicClient | None = None
        self._served_lock = threading.Lock()
        self._served: tuple[float, set | None] = (-1.0, None)  # answered when, what
        _default_timeout(self.api.rest_client.pool_manager, self._current_timeout)

    def _current_timeout(self) -> urllib3.Timeout:
        return self._timeout if self.outage.reached else self._first_timeout

    def with_timeout(self, connect: float, read: float) -> KubeClient:
        """The same cluster with other request timeouts (its own connections)."""
        other = KubeClient(self.api, timeout=(connect, read), outage_seconds=self.outage.budget)
        other.outage = self.outage
        return other

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path | str, context: str | None = None,
                        origin: str = SITE_ORIGIN,
                        outage_seconds: float = OUTAGE_SECONDS) -> KubeClient:
        """``origin``: where the kubeconfig was named (a flag, KUBECONFIG, site.yaml)."""
        configuration = k8s_client.Configuration()
        try:
            k8s_config.load_kube_config(config_file=str(Path(kubeconfig).expanduser()),
                                        context=context, client_configuration=configuration,
                                        persist_config=False)
        except (k8s_config.ConfigException, OSError) as exc:
            where = "" if origin == SITE_ORIGIN else f"{origin}: "
            raise ConfigError(f"{where}cannot use kubeconfig {kubeconfig}"
                              f"{f' context {context}' if context else ''}: {exc}",
                              hint=hint_for(origin)) from exc
        return cls(k8s_client.ApiClient(configuration), outage_seconds=outage_seconds)

    # -- discovery ---------------------------------------------------------------------

    def cache_file(self) -> Path:
        ca = self.api.configuration.ssl_ca_cert
        ca_bytes = Path(ca).read_bytes() if ca and Path(ca).exists() else b""
        key = hashlib.sha256(self.host.encode() + b"\0" + ca_bytes).hexdigest()[:24]
        return discovery_cache_dir() / f"{key}.json"

    @property
    def dynamic(self) -> DynamicClient:
        with self._lock:
            if self._dynamic is None:
                cache = self.cache_file()
                cache.parent.mkdir(parents=True, exist_ok=True)
                self._dynamic = self._guard("discovery", lambda: DynamicClient(
                    self.api, cache_file=str(cache), discoverer=CacheWrittenAtExit))
            return self._dynamic

    def server_version(self) -> str:
        return self.dynamic.version.get("kubernetes", {}).get("gitVersion", "unknown")

    def invalidate_discovery(self) -> None:
        with self._lock:
            self._guard("discovery", self.dynamic.resources.invalidate_cache)

    def resolve(self, api_version: str, kind: str) -> ApiResource:
        """The served resource for apiVersion/kind, or ``Unsupported`` saying why not."""
        with self._lock:
            try:
                found = self._guard(f"discovery of {api_version} {kind}", lambda:
                                    self.dynamic.resources.get(**_search_terms(api_version, kind)))
            except (ResourceNotFoundError, ResourceNotUniqueError):
                found = None
        if found is None:
            message, hint = unserved_message(api_version, kind, self.server_version(),
                                             self.served_versions(api_version.rpartition("/")[0]))
            raise Unsupported(message, hint)
        return ApiResource(found.group_version, found.kind, found.name, bool(found.namespaced),
                           tuple(found.verbs or ()))

    def served_versions(self, group: str) -> list[str]:
        if not group:
            return ["v1"]
        try:
            answer = self.request("GET", f"/apis/{group}")
        except KubeError:
            return []
        return [version.get("version", "") for version in answer.get("versions") or []]

    def served_resources(self) -> set[tuple[str, str, str]] | None:
        """(group, version, plural) of every resource of the /apis groups served now, in one
        request (aggregated discovery, Kubernetes 1.26+); None when the server cannot say so.

        Callers that ask while a request is under way share its answer (the CRD gates of
        stages running at once poll it): what is served only grows while they wait, so an
        answer that misses the newest CRD just means "not yet" to its poller."""
        asked = time.monotonic()
        with self._served_lock:
            answered, served = self._served
            if answered < asked:
                served = self._ask_served()
                self._served = (time.monotonic(), served)
            return served

    def _ask_served(self) -> set[tuple[str, str, str]] | None:
        answer = self.request("GET", "/apis", accept=f"{AGGREGATED_DISCOVERY},application/json")
        if answer.get("kind") != "APIGroupDiscoveryList":
            return None
        return {((group.get("metadata") or {}).get("name", ""), version.get("version", ""),
                 resource.get("resource", ""))
                for group in answer.get("items") or []
                for version in group.get("versions") or []
                for resource in version.get("resources") or []}

    def listable_resources(self) -> list[ApiResource]:
        """Every preferred-version resource that can be listed and deleted."""
        try:
            resources = self._discovered_resources()
        except NotFound:  # the cache names a group gone since (its CRDs removed): ask afresh
            self.invalidate_discovery()
            resources = self._discovered_resources()
        found = {}
        for resource in resources:
            verbs = set(resource.verbs or ())
            if not getattr(resource, "preferred", False) or not {"list", "delete"} <= verbs:
                continue
            if "/" in (resource.name or ""):
                continue
            item = ApiResource(resource.group_version, resource.kind, resource.name,
                               bool(resource.namespaced), tuple(verbs))
            found[(item.group, item.kind)] = item
        return list(found.values())

    def _discovered_resources(self) -> list:
        with self._lock:
            # Iterating the discoverer yields, per kind, a list of Resource (and ResourceList).
            return self._guard("discovery", lambda: [
                r for kinds in self.dynamic.resources for r in kinds
                if isinstance(r, Resource) and not isinstance(r, ResourceList)])

    # -- requests -----------------------------------------------------------------------

    def _guard(self, what: str, call):
        """Run a call of the official client, turning its failures into KubeError."""
        if self.outage.given_up:
            raise Unreachable(f"{what}: not asked: the API server {self.host} gave no answer "
                              f"earlier in this run ({self.outage.last_failure})",
                              UNREACHABLE_HINT)
        try:
            result = call()
        except ApiException as exc:
            if exc.status:  # an HTTP answer: the server is there
                self.outage.answered()
            raise self._api_error(exc, what) from None
        except AttributeError as exc:
            # The official client raises ApiException(status=0) for a TLS failure, then
            # fails decoding its empty body: the ApiException is the real error.
            if isinstance(exc.__context__, ApiException):
                raise self._api_error(exc.__context__, what) from None
            raise
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if _certificate_not_verified(exc):
                raise self._untrusted(what, _innermost(exc)) from None
            raise self._unanswered(f"{what}: cannot reach the API server {self.host}: {exc}") \
                from None
        self.outage.answered()
        return result

    def _unanswered(self, message: str) -> Unreachable:
        """Every call the server did not answer counts against the run's one budget, retried
        or not (preflight's checks, status --live): spent, the server is given up."""
        self.outage.allows_retry(unreachable=True, failure=message)
        return Unreachable(message, UNREACHABLE_HINT)

    def _api_error(self, exc: ApiException, what: str) -> KubeError:
        if exc.status == 0:  # TLS failure reported by the REST client
            if "CERTIFICATE_VERIFY_FAILED" in str(exc.reason):
                return self._untrusted(what, exc.reason)
            return self._unanswered(f"{what}: TLS error talking to the API server "
                                    f"{self.host}: {exc.reason}")
        return from_status(exc.status, exc.body, what)

    def _untrusted(self, what: str, detail: Any) -> KubeError:
        return KubeError(f"{what}: the API server {self.host}'s TLS certificate is not signed by "
                         f"the CA the kubeconfig trusts: {detail}",
                         "give the cluster's CA in the kubeconfig (certificate-authority-data, "
                         "or certificate-authority: FILE) for this cluster")

    def _open(self, method: str, path: str, query: list | None, *, body: Any = None,
              content_type: str = "application/json", accept: str = "application/json",
              what: str, timeout: urllib3.Timeout | None = None, stream: bool = False) -> Any:
        query = [(k, v) for k, v in (query or []) if v is not None]
        headers = {"Accept": accept, "Content-Type": content_type,
                   **self.api.default_headers}
        self.api.update_params_for_auth(headers, query, ["BearerToken"])
        url = f"{self._base_path}{path}?{urlencode(query)}" if query else self._base_path + path
        payload = json.dumps(body).encode() if body is not None else None
        # Straight to the connection pool the official client configured (TLS, client
        # certificate, proxy): its PoolManager would parse the whole URL again on every
        # request, and this process's CPU is on the critical path of a big apply.
        return self._guard(what, lambda: self._pool.urlopen(
            method, url, body=payload, headers=headers,
            timeout=timeout or self._current_timeout(), retries=False, redirect=False,
            preload_content=not stream))

    def request(self, method: str, path: str, *, body: Any = None, query: list | None = None,
                content_type: str = "application/json", what: str = "",
                raw: bool = False, accept: str = "application/json") -> Any:
        what = what or f"{method} {path}"
        response = self._open(method, path, query, body=body, content_type=content_type,
                              accept=accept, what=what)
        data = response.data
        if not 200 <= response.status < 300:
            raise from_status(response.status, data, what)
        if raw:
            return data.decode("utf-8", "replace")
        return json.loads(data) if data else {}

    def apply(self, obj: dict, resource: ApiResource, *, dry_run: bool = False,
              force: bool = False, what: str = "", answer: bool = True) -> dict:
        """The object as the server made it; ``answer=False``: not read ({}), for a caller
        that does not need it (a CRD's answer is its whole schema, megabytes to parse)."""
        meta = obj["metadata"]
        query = [("fieldManager", FIELD_MANAGER), ("force", "true" if force else None),
                 ("dryRun", "All" if dry_run else None)]
        result = self.request("PATCH", resource.path(meta.get("namespace"), meta["name"]),
                              body=obj, query=query, raw=not answer, what=what,
                              content_type="application/apply-patch+yaml")
        return result if answer else {}

    def get(self, resource: ApiResource, namespace: str | None, name: str) -> dict:
        return self.request("GET", resource.path(namespace, name))

    def list(self, resource: ApiResource, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None) -> list[dict]:
        answer = self.request("GET", resource.path(namespace), query=[
            ("labelSelector", label_selector), ("fieldSelector", field_selector)])
        items = answer.get("items") or []
        for item in items:  # list items omit apiVersion/kind
            item.setdefault("apiVersion", resource.group_version)
            item.setdefault("kind", resource.kind)
        return items

    def watch(self, resource: ApiResource, *, label_selector: str | None,
              resource_version: str | None, seconds: int) -> WatchStream:
        """Changes to the objects of a type after ``resource_version`` (None: every object
        as it is now first, as ADDED), as they happen; the server ends the stream after
        ``seconds``."""
        what = f"watch {resource.plural}"
        response = self._open("GET", resource.path(), [
            ("watch", "true"), ("labelSelector", label_selector),
            ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(seconds))], what=what, stream=True,
            timeout=urllib3.Timeout(connect=self._timeout.connect_timeout, read=seconds + 10))
        if not 200 <= response.status < 300:
            raise from_status(response.status, response.data, what)
        return WatchStream(response, resource, what)

    def list_names(self, resource: ApiResource, namespace: str | None = None) -> list[str]:
        """Names of every object of a type (metadata only: cheap even for big objects)."""
        answer = self.request("GET", resource.path(namespace), accept=METADATA_ONLY)
        return [item["metadata"]["name"] for item in answer.get("items") or []]

    def merge_patch(self, resource: ApiResource, namespace: str | None, name: str, patch: dict,
                    what: str = "") -> dict:
        return self.request("PATCH", resource.path(namespace, name), body=patch,
                            query=[("fieldManager", FIELD_MANAGER)],
                            content_type="application/merge-patch+json", what=what)

    def json_patch(self, resource: ApiResource, namespace: str | None, name: str,
                   patch: list[dict], what: str = "", dry_run: bool = False) -> dict:
        return self.request("PATCH", resource.path(namespace, name), body=patch,
                            query=[("dryRun", "All" if dry_run else None)],
                            content_type="application/json-patch+json", what=what)

    def delete(self, resource: ApiResource, namespace: str | None, name: str,
               propagation: str = "Background", dry_run: bool = False) -> dict:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        return self.request("DELETE", resource.path(namespace, name), body=body,
                            query=[("dryRun", "All" if dry_run else None)])

    def pod_log(self, namespace: str, pod: str, container: str, *, previous: bool,
                tail_lines: int) -> str:
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        return self.request("GET", path, raw=True, query=[
            ("container", container), ("previous", "true" if previous else None),
            ("tailLines", str(tail_lines))])


class CacheWrittenAtExit(LazyDiscoverer):
    """The official discoverer rewrites its whole cache file after every refresh and every
    group it fetches (~30 times in a full apply, the file encoded by a Python hook each
    time); this one writes it once, when the process ends."""

    def __init__(self, client: Any, cache_file: str):
        self._unwritten = False
        super().__init__(client, cache_file)
        atexit.register(self.write)

    def _write_cache(self) -> None:
        self._unwritten = True

    def write(self) -> None:
        if self._unwritten:
            self._unwritten = False
            super()._write_cache()


class WatchStream:
    """The events of one watch request: (type, object) pairs; ``close`` from another
    thread ends the iteration at once."""

    def __init__(self, response: Any, resource: ApiResource, what: str):
        self._response, self._resource, self._what = response, resource, what
        self._closed = self._ended = False
        # close() from another thread and the stream's own end must not cross: shutting
        # down a response already closed fails (its socket is gone)
        self._ending = threading.Lock()

    def __iter__(self):
        try:
            for line in self._response:
                if self._closed:
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    obj.setdefault("apiVersion", self._resource.group_version)
                    obj.setdefault("kind", self._resource.kind)
                yield event.get("type", ""), obj
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if not self._closed:  # not ended by close(): the connection broke
                raise Unreachable(f"{self._what}: the stream broke: {exc}",
                                  UNREACHABLE_HINT) from None
        finally:  # a connection left mid-stream cannot carry another request
            with self._ending:
                self._ended = True
                self._response.close()
                self._response.release_conn()

    def close(self) -> None:
        self._closed = True
        with self._ending:
            if not self._ended:
                self._response.shutdown()


def _innermost(exc: BaseException) -> BaseException:
    seen = [exc]
    while (exc.__cause__ or exc.__context__ or getattr(exc, "reason", None)) not in (None, *seen):
        following = exc.__cause__ or exc.__context__ or exc.reason
        if not isinstance(following, BaseException):
            break
        exc = following
        seen.append(exc)
    return exc


def _certificate_not_verified(exc: BaseException) -> bool:
    return "CERTIFICATE_VERIFY_FAILED" in f"{exc} {_innermost(exc)}"


def _default_timeout(manager: Any, timeout: Callable[[], urllib3.Timeout]) -> None:
    """The official client passes ``timeout=None`` (no timeout at all: a server that accepts
    the connection and never answers hangs discovery forever) unless each call names one;
    its requests (discovery) get ours instead."""
    request = manager.request

    def with_timeout(method: str, url: str, *args: Any, timeout: Any = None, **kwargs: Any):
        return request(method, url, *args, timeout=timeout or with_timeout.timeout(), **kwargs)

    with_timeout.timeout = timeout
    manager.request = with_timeout


def _search_terms(api_version: str, kind: str) -> dict:
    # Explicit prefix and group: a bare "v1" would search every group's v1 (knative's
    # Service would match too) and fetch discovery for all of them.
    group, _, version = api_version.rpartition("/")
    if not group:
        return {"prefix": "api", "api_version": version, "kind": kind}
    return {"prefix": "apis", "group": group, "api_version": version, "kind": kind}


def client_for(target: Any, cluster: str | None = None) -> KubeClient:
    """A KubeClient from a RunContext (cached per cluster), a KubeClient or an ApiClient."""
    if isinstance(target, KubeClient):
        return target
    if isinstance(target, RunContext):
        kubeconfig, context = target.kubeconfig_for(cluster)
        origin = target.kubeconfig_origins.get(cluster or target.cluster_name, SITE_ORIGIN)
        budget = target.site.timeouts.object_seconds
        # taken before: ctx.cached holds its (not reentrant) lock while ``made`` runs
        outage = outage_of(target, kubeconfig, context, budget)

        def made() -> KubeClient:
            client = KubeClient.from_kubeconfig(kubeconfig, context, origin, budget)
            client.outage = outage
            return client
        return target.cached(f"kube:{kubeconfig}:{context}", made)
    if isinstance(target, k8s_client.ApiClient):
        return KubeClient(target)
    if isinstance(target, (str, Path)):
        return KubeClient.from_kubeconfig(target)
    raise TypeError(f"cannot make a Kubernetes client from {type(target).__name__}")
