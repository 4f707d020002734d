"""The cluster half of the site lock, and the cluster copy of the journal.

A coordination.k8s.io Lease ``cubeinstall-<site>`` in kube-system, renewed
while the run lasts. A run finding a live Lease held by someone else is
refused with the holder's name; an expired one, or one whose holder was a
process of this machine that no longer exists (a killed run), is taken over
with an optimistic-concurrency update, so two runs cannot both win.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from contextlib import contextmanager
from typing import Iterator

from cubeinstall.core.locking import SiteLocked, holder_identity, holder_is_gone
from cubeinstall.kube.client import ApiResource, KubeClient
from cubeinstall.kube.errors import Conflict, NotFound
from cubeinstall.kube.objects import MANAGED_BY, MANAGED_BY_LABEL

NAMESPACE = "kube-system"
DURATION_SECONDS = 60
RENEW_SECONDS = 15
# Well-known resources: no discovery round trip before the lock is held.
LEASE = ApiResource("coordination.k8s.io/v1", "Lease", "leases", namespaced=True)
CONFIGMAP = ApiResource("v1", "ConfigMap", "configmaps", namespaced=True)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expired(lease: dict) -> bool:
    spec = lease.get("spec", {})
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    if not renewed:
        return True
    when = dt.datetime.strptime(renewed.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    age = (dt.datetime.now(dt.timezone.utc) - when).total_seconds()
    return age > spec.get("leaseDurationSeconds", DURATION_SECONDS)


def _body(site: str, holder: str, resource_version: str | None = None) -> dict:
    metadata = {"name": f"cubeinstall-{site}", "namespace": NAMESPACE,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY}}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    now = _now()
    return {"apiVersion": LEASE.group_version, "kind": LEASE.kind, "metadata": metadata,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": DURATION_SECONDS,
                     "acquireTime": now, "renewTime": now}}


@contextmanager
def site_lease(client: KubeClient, site: str) -> Iterator[None]:
    holder = holder_identity()
    name = f"cubeinstall-{site}"
    _acquire(client, site, holder)
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(client, site, holder, stop), daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(timeout=5)
        try:
            client.delete(LEASE, NAMESPACE, name)
        except NotFound:
            pass


def _acquire(client: KubeClient, site: str, holder: str) -> None:
    name = f"cubeinstall-{site}"
    try:
        client.request("POST", LEASE.path(NAMESPACE), body=_body(site, holder))
        return
    except Conflict:
        pass  # exists: someone holds it, or a dead run left it behind
    lease = client.get(LEASE, NAMESPACE, name)
    current = lease.get("spec", {}).get("holderIdentity", "unknown")
    if not _expired(lease) and not holder_is_gone(current):
        raise SiteLocked(
            f"site {site} is being changed by another run ({current}, Lease "
            f"{NAMESPACE}/{name})",
            hint="wait for it to finish; a Lease whose holder died expires after "
                 f"{DURATION_SECONDS} s")
    try:
        client.request("PUT", LEASE.path(NAMESPACE, name),
                       body=_body(site, holder, lease["metadata"]["resourceVersion"]))
    except Conflict:
        raise SiteLocked(f"site {site}: another run took the expired Lease first",
                         hint="wait for it to finish") from None


def _renew(client: KubeClient, site: str, holder: str, stop: threading.Event) -> None:
    name = f"cubeinstall-{site}"
    while not stop.wait(RENEW_SECONDS):
        try:
            lease = client.get(LEASE, NAMESPACE, name)
            lease["spec"]["renewTime"] = _now()
            client.request("PUT", LEASE.path(NAMESPACE, name), body=lease)
        except Exception:  # noqa: BLE001 - a missed renewal is retried; the run goes on
            continue


def save_journal(client: KubeClient, site: str, text: str) -> None:
    """The journal's cluster copy: ConfigMap cubeinstall-journal-<site> in kube-system.

    An empty journal (everything uninstalled) deletes it: nothing of ours stays.
    """
    if not json.loads(text).get("stages"):
        try:
            client.delete(CONFIGMAP, NAMESPACE, f"cubeinstall-journal-{site}")
        except NotFound:
            pass
        return
    body = {"apiVersion": CONFIGMAP.group_version, "kind": CONFIGMAP.kind,
            "metadata": {"name": f"cubeinstall-journal-{site}", "namespace": NAMESPACE,
                         "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
            "data": {"journal.json": text}}
    client.apply(body, CONFIGMAP, answer=False)
