"""Which failures are worth retrying, and retrying them inside a deadline.

Transient: no answer at all (apiserver restarting), 429 and 5xx (includes
"failed calling webhook" while a webhook starts), optimistic-lock conflicts,
a namespace still terminating. The engine adds, where they apply, "no matches
for kind" right after its CRD was created and a namespace created a moment ago. Everything else (other 4xx) fails at once with the server's
message, because waiting cannot fix a wrong object.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from cubeinstall.core.outage import Outage
from cubeinstall.kube.errors import (
    Conflict,
    Forbidden,
    KubeError,
    NotFound,
    ServerBusy,
    Unreachable,
)

T = TypeVar("T")

__all__ = ["Outage", "call_with_retry", "call_within_outage", "is_transient", "namespace_not_yet", "unserved_message"]

WEBHOOK_NOT_SERVING = "failed calling webhook"


def is_transient(error: Exception) -> bool:
    if isinstance(error, (Unreachable, ServerBusy)):
        return True
    if isinstance(error, Conflict):
        return not error.is_field_conflict  # "the object has been modified": just retry
    if isinstance(error, Forbidden):
        return "is being terminated" in error.server_message
    if isinstance(error, KubeError):
        return WEBHOOK_NOT_SERVING in error.server_message
    return False


def namespace_not_yet(error: Exception) -> bool:
    """Writing into a namespace created a moment ago can fail until admission sees it.

    Only for writes of objects inside a namespace: the same answer to a GET of
    the namespace itself just means it does not exist.
    """
    return isinstance(error, NotFound) and error.details.get("kind") == "namespaces"


def backoff_delays(first: float = 0.2, cap: float = 5.0):
    delay = first
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(cap, delay * 2)


def call_with_retry(call: Callable[[], T], deadline: float, *,
                    transient: Callable[[Exception], bool] = is_transient,
                    on_retry: Callable[[Exception, float], None] | None = None) -> T:
    """``call()`` until it succeeds, fails for good, or ``deadline`` (monotonic) passes.

    On the deadline the last transient error is raised as it is: its text
    already names the object and the server's words.
    """
    for delay in backoff_delays():
        try:
            return call()
        except Exception as error:
            if not transient(error):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            if on_retry is not None:
                on_retry(error, delay)
            time.sleep(min(delay, remaining))
    raise AssertionError("unreachable")  # pragma: no cover


def call_within_outage(request: Callable[[], T], outage: Outage, deadline: float, *,
                       also: Callable[[Exception], bool] | None = None,
                       say: Callable[[str], None] | None = None) -> T:
    """``request()`` retried by error class (``also``: more transient errors) within
    ``deadline`` and the server's one outage budget (the client counts every unanswered
    call against it, and every answer ends it: a ``request`` that asked nothing says
    nothing about the server); ``say`` hears each "retrying (n/N) ..." for a server that
    does not answer, so a wait on it is never silent."""
    def transient(error: Exception) -> bool:
        return ((is_transient(error) or (also is not None and also(error)))
                and not (isinstance(error, Unreachable) and outage.given_up))

    def retrying(error: Exception, delay: float) -> None:
        note = outage.retrying() if isinstance(error, Unreachable) and say else None
        if note:
            say(f"{error.message}; {note}")
    return call_with_retry(request, deadline, transient=transient, on_retry=retrying)


# (apiVersion, kind or "*") -> (Kubernetes version that removed it, what to use instead)
REMOVED_APIS: dict[tuple[str, str], tuple[str, str]] = {
    ("extensions/v1beta1", "Ingress"): ("1.22", "networking.k8s.io/v1"),
    ("extensions/v1beta1", "PodSecurityPolicy"): ("1.16", "policy/v1beta1, itself removed in 1.25"),
    ("extensions/v1beta1", "NetworkPolicy"): ("1.16", "networking.k8s.io/v1"),
    ("extensions/v1beta1", "*"): ("1.16", "apps/v1"),
    ("apps/v1beta1", "*"): ("1.16", "apps/v1"),
    ("apps/v1beta2", "*"): ("1.16", "apps/v1"),
    ("networking.k8s.io/v1beta1", "*"): ("1.22", "networking.k8s.io/v1"),
    ("apiextensions.k8s.io/v1beta1", "*"): ("1.22", "apiextensions.k8s.io/v1"),
    ("apiregistration.k8s.io/v1beta1", "*"): ("1.22", "apiregistration.k8s.io/v1"),
    ("admissionregistration.k8s.io/v1beta1", "MutatingWebhookConfiguration"):
        ("1.22", "admissionregistration.k8s.io/v1"),
    ("admissionregistration.k8s.io/v1beta1", "ValidatingWebhookConfiguration"):
        ("1.22", "admissionregistration.k8s.io/v1"),
    ("rbac.authorization.k8s.io/v1beta1", "*"): ("1.22", "rbac.authorization.k8s.io/v1"),
    ("rbac.authorization.k8s.io/v1alpha1", "*"): ("1.22", "rbac.authorization.k8s.io/v1"),
    ("scheduling.k8s.io/v1beta1", "*"): ("1.22", "scheduling.k8s.io/v1"),
    ("scheduling.k8s.io/v1alpha1", "*"): ("1.22", "scheduling.k8s.io/v1"),
    ("coordination.k8s.io/v1beta1", "*"): ("1.22", "coordination.k8s.io/v1"),
    ("certificates.k8s.io/v1beta1", "*"): ("1.22", "certificates.k8s.io/v1"),
    ("authentication.k8s.io/v1beta1", "*"): ("1.22", "authentication.k8s.io/v1"),
    ("authorization.k8s.io/v1beta1", "*"): ("1.22", "authorization.k8s.io/v1"),
    ("storage.k8s.io/v1beta1", "CSIStorageCapacity"): ("1.27", "storage.k8s.io/v1"),
    ("storage.k8s.io/v1beta1", "*"): ("1.22", "storage.k8s.io/v1"),
    ("batch/v1beta1", "*"): ("1.25", "batch/v1"),
    ("batch/v2alpha1", "*"): ("1.21", "batch/v1"),
    ("discovery.k8s.io/v1beta1", "*"): ("1.25", "discovery.k8s.io/v1"),
    ("events.k8s.io/v1beta1", "*"): ("1.25", "events.k8s.io/v1"),
    ("node.k8s.io/v1beta1", "*"): ("1.25", "node.k8s.io/v1"),
    ("policy/v1beta1", "PodSecurityPolicy"):
        ("1.25", "nothing: PodSecurityPolicy is gone, use Pod Security Admission labels"),
    ("policy/v1beta1", "*"): ("1.25", "policy/v1"),
    ("autoscaling/v2beta1", "*"): ("1.25", "autoscaling/v2"),
    ("autoscaling/v2beta2", "*"): ("1.26", "autoscaling/v2"),
    ("flowcontrol.apiserver.k8s.io/v1beta1", "*"): ("1.26", "flowcontrol.apiserver.k8s.io/v1"),
    ("flowcontrol.apiserver.k8s.io/v1beta2", "*"): ("1.29", "flowcontrol.apiserver.k8s.io/v1"),
    ("flowcontrol.apiserver.k8s.io/v1beta3", "*"): ("1.32", "flowcontrol.apiserver.k8s.io/v1"),
}


def removed_api(api_version: str, kind: str) -> tuple[str, str] | None:
    """(removed in, replacement) when upstream Kubernetes removed this apiVersion/kind."""
    return REMOVED_APIS.get((api_version, kind)) or REMOVED_APIS.get((api_version, "*"))


def unserved_message(api_version: str, kind: str, server_version: str,
                     served_versions: list[str]) -> tuple[str, str]:
    """(message, hint) for an apiVersion the cluster does not serve."""
    message = f"apiVersion {api_version} (kind {kind}) is not served by this cluster " \
              f"(Kubernetes {server_version})"
    removed = removed_api(api_version, kind)
    if removed:
        return (f"{message}: it was removed in Kubernetes {removed[0]}; use {removed[1]}",
                ("update the manifest, or pick a component version in site.yaml whose "
                 "manifests use current APIs"))
    group = api_version.rpartition("/")[0]
    if served_versions:
        return (f"{message}; the group {group or 'core'} is served in "
                f"{', '.join(served_versions)}"), "change apiVersion to a served version"
    return (f"{message}; no API group {group} at all",
            "install the CRD or component that provides it first (an earlier stage)")
