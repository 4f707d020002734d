"""The "webhook serving" gate.

An admission webhook with failurePolicy Fail that is registered before its
server answers makes every matching request fail. After applying webhook
configurations the engine therefore probes each webhook: a server-side
dry-run apply of an object of this apply set that the webhook intercepts.
"failed calling webhook" means not serving yet (wait and retry); any other
answer means the server answered. A webhook nothing here would exercise
falls back to waiting for its Service's ready endpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from cubeinstall.kube.client import ApiResource, KubeClient
from cubeinstall.kube.errors import ApplyFailed, KubeError, NotFound
from cubeinstall.kube.retry import WEBHOOK_NOT_SERVING, backoff_delays, is_transient
from cubeinstall.kube.selectors import matches

WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


@dataclass(frozen=True)
class Candidate:
    obj: dict  # as we apply it
    resource: ApiResource


def rule_matches(rule: dict, resource: ApiResource, operation: str) -> bool:
    version = resource.group_version.rpartition("/")[2]
    scope = rule.get("scope") or "*"
    return (any(g in ("*", resource.group) for g in rule.get("apiGroups") or [])
            and any(v in ("*", version) for v in rule.get("apiVersions") or [])
            and any(r in ("*", "*/*", resource.plural) for r in rule.get("resources") or [])
            and any(o in ("*", operation) for o in rule.get("operations") or [])
            and (scope == "*" or (scope == "Namespaced") == resource.namespaced))


def intercepted(webhook: dict, candidate: Candidate, operation: str,
                namespace_labels: Callable[[str], dict]) -> bool:
    meta = candidate.obj.get("metadata") or {}
    if not matches(webhook.get("objectSelector"), meta.get("labels")):
        return False
    if candidate.resource.namespaced and not matches(
            webhook.get("namespaceSelector"), namespace_labels(meta.get("namespace", ""))):
        return False
    return any(rule_matches(rule, candidate.resource, operation) for rule in webhook.get("rules") or [])


def _exists(client: KubeClient, candidate: Candidate) -> bool:
    meta = candidate.obj["metadata"]
    try:
        client.get(candidate.resource, meta.get("namespace"), meta["name"])
    except NotFound:
        return False
    return True


def _probe_for(client, webhook, candidates, namespace_labels) -> Candidate | None:
    for candidate in candidates:
        operation = "UPDATE" if _exists(client, candidate) else "CREATE"
        if intercepted(webhook, candidate, operation, namespace_labels):
            return candidate
    return None


def wait_serving(client: KubeClient, configs: list[dict], candidates: list[Candidate], *,
                 stage: str, deadline: float, report: Callable[[str], None]) -> None:
    namespace_labels = _namespace_labels(client)
    for config in configs:
        for webhook in config.get("webhooks") or []:
            name = f"{config['kind']} {config['metadata']['name']} webhook {webhook.get('name')}"
            probe = _probe_for(client, webhook, candidates, namespace_labels)
            if probe is not None:
                _wait(partial(_answers, client, probe), name, stage, deadline, report)
            elif (webhook.get("clientConfig") or {}).get("service"):
                service = webhook["clientConfig"]["service"]
                _wait(partial(_endpoints_ready, client, service), name, stage, deadline, report,
                      waiting_for="ready endpoints of its service "
                                  f"{service.get('namespace')}/{service.get('name')}")
            else:
                report(f"{name}: nothing in stage {stage} is intercepted by it; not probed")


def _namespace_labels(client: KubeClient) -> Callable[[str], dict]:
    """Live labels of a namespace (the server adds kubernetes.io/metadata.name), cached."""
    cache: dict[str, dict] = {}
    resource = client.resolve("v1", "Namespace")

    def labels(name: str) -> dict:
        if name not in cache:
            try:
                cache[name] = client.get(resource, None, name)["metadata"].get("labels") or {}
            except NotFound:
                cache[name] = {"kubernetes.io/metadata.name": name}
        return cache[name]
    return labels


def _answers(client: KubeClient, probe: Candidate) -> str | None:
    """None when the webhook answered; else why not."""
    try:
        client.apply(probe.obj, probe.resource, dry_run=True)
    except KubeError as error:
        if WEBHOOK_NOT_SERVING in error.server_message or is_transient(error):
            return error.server_message
    return None


def _endpoints_ready(client: KubeClient, service: dict) -> str | None:
    slices = client.list(client.resolve("discovery.k8s.io/v1", "EndpointSlice"),
                         service.get("namespace"),
                         label_selector=f"kubernetes.io/service-name={service.get('name')}")
    ready = any((e.get("conditions") or {}).get("ready") for s in slices
                for e in s.get("endpoints") or [])
    return None if ready else "no ready endpoints"


def _wait(check: Callable[[], str | None], name: str, stage: str, deadline: float,
          report: Callable[[str], None], waiting_for: str = "its server to answer") -> None:
    reported = False
    for delay in backoff_delays(first=0.5, cap=3.0):
        problem = check()
        if problem is None:
            return
        if time.monotonic() >= deadline:
            raise ApplyFailed(stage, f"{name} is not serving: {problem}",
                              "check that the webhook's pods are running and its certificate "
                              "matches the caBundle; on a simulated cluster set gates.webhooks: "
                              "skip in site.yaml", targets=(name,))
        if not reported:
            report(f"waiting for {name}: {waiting_for}")
            reported = True
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
