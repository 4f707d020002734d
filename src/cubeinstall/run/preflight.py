"""Preflight: graded, read-only checks before any change.

Each check has a stable ID a user can pass to ``--ignore``; it returns one or
more Findings graded ok / warning / error. Errors stop ``all`` with exit code 3
before anything is touched. Checks only read: the cluster through
SelfSubjectAccessReviews and GETs, hosts through one probe command, the
registry through GET /v2/ (and a TCP connect from each node), MySQL through a login.

On a site of several clusters the cluster checks run for each cluster the run acts
on, against that cluster with its own nodes and its own stages; their findings name
the cluster, so one unreachable cluster fails its checks while the others pass.
Node checks ask every node of the run once (``--cluster``: that cluster's nodes).
"""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Iterable

from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import CubeError, PreflightError
from cubeinstall.run.targets import Target, cluster_context, clusters_of
from cubeinstall.site.stages import Layer, Stage

MINIMUM_KUBERNETES = (1, 22)
TESTED_KUBERNETES = ((1, 28), (1, 36))


@dataclass(frozen=True)
class Finding:
    check: str
    grade: str  # ok | warning | error | ignored (an error --ignore accepts)
    message: str
    hint: str = ""
    cluster: str | None = None  # a cluster check's cluster, on a site of several

    @property
    def label(self) -> str:
        """How the summary names it: the check, and its cluster on a site of several."""
        return self.check + (f" (cluster {self.cluster})" if self.cluster else "")


Check = Callable[[RunContext, list[Stage]], Iterable[Finding]]


def _layers(stages: list[Stage]) -> set[Layer]:
    return {stage.layer for stage in stages}


# -- cluster -----------------------------------------------------------------------------

def cluster_version(ctx: RunContext, stages: list[Stage]) -> Iterable[Finding]:
    from cubeinstall.stages.cluster import client

    version = client(ctx).server_version()
    numbers = tuple(int("".join(ch for ch in part if ch.isdigit()) or 0)
                    for part in version.lstrip("v").split(".")[:2])
    if numbers < MINIMUM_KUBERNETES:
        yield Finding("cluster-version", "error", f"Kubernetes {version} is older than 1.22",
                      "upgrade the cluster: the platform's manifests use APIs of 1.22 and later")
    elif not TESTED_KUBERNETES[0] <= numbers <= TESTED_KUBERNETES[1]:
        yield Finding("cluster-version", "warning",
                      f"Kubernetes {version} is outside the tested range 1.28-1.36")
    else:
        yield Finding("cluster-version", "ok", f"Kubernetes {version}")


# What the cluster stages do, as (verb, group, resource) access reviews.
_PERMISSIONS = (
    ("create", "", "namespaces"), ("patch", "", "nodes"), ("create", "", "secrets"),
    ("create", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("create", "rbac.authorization.k8s.io", "clusterroles"),
    ("bind", "rbac.authorization.k8s.io", "clusterroles"),
    ("create", "apps", "deployments"), ("create", "", "persistentvolumes"),
    ("create", "admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    ("create", "coordination.k8s.io", "leases"),
)


def cluster_permissions(ctx: RunContext, stages: list[Stage]) -> Iterable[Finding]:
    from cubeinstall.stages.cluster import client

    kube = client(ctx)
    denied = []
    for verb, group, resource in _PERMISSIONS:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": {"verb": verb, "group": group,
                                                  "resource": resource}}}
        answer = kube.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                              body=review)
        if not answer.get("status", {}).get("allowed"):
            denied.append(f"{verb} {resource}" + (f".{group}" if group else ""))
    if denied:
        yield Finding("cluster-permissions", "error",
                      f"the kubeconfig's user may not: {', '.join(denied)}",
                      "use a cluster-admin kubeconfig for the install")
    else:
        yield Finding("cluster-permissions", "ok", "cluster-admin rights for every stage")


def cluster_nodes(ctx: RunContext, stages: list[Stage]) -> Iterable[Finding]:
    from cubeinstall.stages.cluster import client

    kube = client(ctx)
    present = {node["metadata"]["name"] for node in kube.list(kube.resolve("v1", "Node"))}
    nodes = ctx.site.for_cluster(ctx.cluster_name).nodes  # the checked cluster's own
    missing = [node.name for node in nodes if node.name not in present]
    if missing:
        yield Finding("cluster-nodes", "error",
                      f"nodes {', '.join(missing)} of site.yaml are not in the cluster",
                      "use the Kubernetes node names (kubectl get nodes) as nodes[].name")
    else:
        yield Finding("cluster-nodes", "ok", f"all {len(nodes)} nodes are in the cluster")


def placement_labels(ctx: RunContext, stages: list[Stage]) -> Iterable[Finding]:
    """Every enabled component's placement label is on some node (the site's roles)."""
    from cubeinstall.site import platform

    labelled = {key for node in ctx.site.nodes for key, value in platform.node_labels(node).items()
                if value == "true"}
    for stage in stages:
        label = stage.placement_label(ctx.site)
        if label and label not in labelled:
            yield Finding("placement-labels", "error",
                          f"{stage.name} runs on nodes labelled {label}=true and no node has it",
                          f"add role {label} to a node in site.yaml")
            return
    yield Finding("placement-labels", "ok", "every placed component has a node")


def gateway_exposure(ctx: RunContext, stages: list[Stage]) -> Iterable[Finding]:
    """The cluster's own exposure of its ingress gateway (Service cube-ingress)."""
    site = ctx.site
    gateway = site.gateway_of(site.cluster)
    field = site.gateway_field(site.cluster)
    if gateway.expose == "NodePort":
        for port in (gateway.node_port_http, gateway.node_port_http_alt):
            if not 30000 <= port <= 32767:
                yield Finding("gateway-exposure", "warning",
                              f"node port {port} is outside the default range 30000-32767",
                              "the API server refuses it unless --service-node-port-range allows it")
                return
        yield Finding("gateway-exposure", "ok", "ingress gateway on node ports")
        return
    # The API server rejects these as externalIPs: fail here, before any change, not at the
    # gateway stage after every other stage has run.
    refused = [address for address in gateway.addresses
               if (ip := ipaddress.ip_address(address)).is_loopback or ip.is_link_local
               or ip.is_multicast or ip.is_unspecified]
    if refused:
        yield Finding("gateway-exposure", "error",
                      f"{field}.addresses {', '.join(refused)}: the API server refuses loopback, "
                      "link-local, multicast and unspecified addresses as externalIPs",
                      f"use an address of a node's network, or {field}.expose: NodePort")
        return
    node_ips = set()
    for node in ctx.site.nodes:
        try:
            node_ips.add(str(ipaddress.ip_address(node.address)))
        except ValueError:
            continue
    strangers = [address for address in gateway.addresses if address not in node_ips]
    if strangers and node_ips:
        yield Finding("gateway-exposure", "warning",
                      f"external IPs {', '.join(strangers)} are not the address of any node",
                      "traffic to an externalIP reaches the gateway only on a node that owns it")
    else:
        yield Finding("gateway-exposure", "ok", f"ingress gateway on {', '.join(gateway.addresses)}")


# -- hosts, registry, database --------------------------------------------------------------

def nodes_reachable(ctx: RunContext, stages: list[Stage]) -> Iterable[Finding]:
    from cubeinstall.remote.probe import probe_nodes

    for node, problem in probe_nodes(ctx):
        if problem:
            yield Finding("nodes-reachable", "error", f"node {node}: {problem}",
                          "check the address, SSH credentials and sudo rights in site.yaml")
        else:
            yield Finding("nodes-reachable", "ok", f"node {node}: SSH and sudo work")


def storage_mounted(ctx: RunContext, stages: list[Stage]) -> Iterable[Finding]:
    """Without the storage stage in this run, /data/k8s must already be mounted everywhere."""
    from cubeinstall.remote.probe import unmounted_nodes

    will_mount = any(stage.name == "storage" for stage in stages)
    unmounted = f"{ctx.site.storage.mount_point} is not mounted"
    problems = unmounted_nodes(ctx)
    for node, problem in problems:
        if problem != unmounted:  # the host could not be asked: never "ok", never "will mount"
            yield Finding("storage-mounted", "error", f"node {node}: cannot check: {problem}",
                          "check the address, SSH credentials and sudo rights in site.yaml")
        elif will_mount:
            yield Finding("storage-mounted", "warning", f"node {node}: {problem} (the storage "
                          "stage of this run will mount it)")
        else:
            yield Finding("storage-mounted", "error", f"node {node}: {problem}",
                          "run the storage stage, or mount the shared file system by hand")
    if not problems:
        yield Finding("storage-mounted", "ok",
                      f"{ctx.site.storage.mount_point} is mounted on every node")


def registry_login(ctx: RunContext, stages: list[Stage]) -> Iterable[Finding]:
    from cubeinstall.images.registry_client import RegistryClient
    from cubeinstall.images.status import target_endpoint

    site_registry = ctx.site.registry
    RegistryClient(target_endpoint(site_registry), timeout=10, attempts=1).ping()
    yield Finding("registry-login", "ok", f"registry {site_registry.host} accepts the credentials")


def registry_reachable(ctx: RunContext, stages: list[Stage]) -> Iterable[Finding]:
    """Nodes pull from the registry: each must reach it, seen from the node."""
    from cubeinstall.remote.probe import CANNOT_CONNECT, nodes_not_reaching

    registry = ctx.site.registry
    problems = nodes_not_reaching(ctx, registry.host, registry.insecure)
    for node, problem in problems:
        if not problem.startswith(CANNOT_CONNECT):  # the node itself could not be asked
            yield Finding("registry-reachable", "error", f"node {node}: cannot check: {problem}",
                          "check the address, SSH credentials and sudo rights in site.yaml")
        else:
            yield Finding("registry-reachable", "error", f"node {node}: {problem}",
                          "check registry.host, that the registry listens, and the node's "
                          "firewall and routes")
    if not problems:
        yield Finding("registry-reachable", "ok", f"every node reaches registry {registry.host}")


def mysql_reachable(ctx: RunContext, stages: list[Stage]) -> Iterable[Finding]:
    from cubeinstall.db.connection import connect, mysql_endpoint

    with mysql_endpoint(ctx) as endpoint:
        connection = connect(endpoint, deadline_seconds=10)
        connection.close()
    yield Finding("mysql-reachable", "ok", f"MySQL {ctx.site.mysql.host}:{ctx.site.mysql.port} accepts the login")


# (id, check, when it applies); a cluster check runs once per cluster, with that
# cluster's context and the stages that act on it
CHECKS: tuple[tuple[str, Check, Callable[[RunContext, list[Stage]], bool]], ...] = (
    ("placement-labels", placement_labels, lambda ctx, s: Layer.CLUSTER in _layers(s)),
    ("gateway-exposure", gateway_exposure, lambda ctx, s: any(x.name == "ingress" for x in s)),
    ("cluster-version", cluster_version, lambda ctx, s: Layer.CLUSTER in _layers(s)),
    ("cluster-permissions", cluster_permissions, lambda ctx, s: Layer.CLUSTER in _layers(s)),
    ("cluster-nodes", cluster_nodes, lambda ctx, s: Layer.CLUSTER in _layers(s)),
    ("nodes-reachable", nodes_reachable, lambda ctx, s: Layer.NODE in _layers(s)),
    ("storage-mounted", storage_mounted,
     lambda ctx, s: Layer.NODE in _layers(s) or any(x.name in ("mysql", "pv-pvc") for x in s)),
    ("registry-login", registry_login,
     lambda ctx, s: ctx.site.registry is not None and Layer.REGISTRY in _layers(s)),
    ("registry-reachable", registry_reachable,
     lambda ctx, s: ctx.site.registry is not None and ctx.site.registry.mirror
     and Layer.NODE in _layers(s)),
    ("mysql-reachable", mysql_reachable,
     lambda ctx, s: ctx.site.mysql.mode == "external" and Layer.DATABASE in _layers(s)),
)
CLUSTER_CHECKS = frozenset({"placement-labels", "gateway-exposure", "cluster-version",
                            "cluster-permissions", "cluster-nodes"})
CHECK_IDS = tuple(check_id for check_id, _, _ in CHECKS)


def run_preflight(ctx: RunContext, targets: list[Target], ignore: Iterable[str] = (),
                  cluster: str | None = None) -> list[Finding]:
    """Run every applicable check for the targets of the run (``cluster``: the run is
    narrowed to that cluster, so are the node checks); raise PreflightError when any
    error is not ignored."""
    ignored = set(ignore)
    unknown = ignored - set(CHECK_IDS)
    if unknown:
        from cubeinstall.core.errors import ConfigError

        raise ConfigError(f"--ignore: unknown check {', '.join(sorted(unknown))}",
                          hint=f"checks are: {', '.join(CHECK_IDS)}")
    places = list(_places(ctx, targets, cluster))
    # The checks only ask (clusters, hosts, registry, database): all at once, listed in
    # the order of CHECKS.
    with ThreadPoolExecutor(max_workers=max(1, len(places))) as pool:
        results = list(pool.map(lambda place: _run_check(*place, ignored=ignored), places))
    findings = [finding for found in results for finding in found]
    for finding in findings:
        ctx.out.event("preflight", check=finding.check, grade=finding.grade,
                      **({"cluster": finding.cluster} if finding.cluster else {}),
                      message=f"  {finding.grade:7} {finding.check}: {finding.message}"
                              + (f" — {finding.hint}" if finding.grade != "ok" and finding.hint else ""))
    errors = [f for f in findings if f.grade == "error"]
    if errors:
        failed = sorted(dict.fromkeys(f.label for f in errors))
        raise PreflightError(
            f"preflight: {len(errors)} problem(s) in {', '.join(failed)} (listed above); "
            "nothing was changed",
            hint="fix them, or pass --ignore ID for a check you accept to fail")
    return findings


def _run_check(check_id: str, check, check_ctx: RunContext, stages: list[Stage],
               name: str | None, *, ignored: set[str]) -> list[Finding]:
    try:
        found = list(check(check_ctx, stages))
    except CubeError as exc:  # the check could not even ask: that is its finding
        found = [Finding(check_id, "error", exc.message, exc.hint or "")]
    if name:
        found = [replace(f, cluster=name, message=f"cluster {name}: {f.message}")
                 for f in found]
    if check_id in ignored:  # still run and listed, so the user sees what is accepted
        found = [replace(f, grade="ignored") if f.grade != "ok" else f for f in found]
    return found


def _places(ctx: RunContext, targets: list[Target], cluster: str | None):
    """(check id, check, its context, its stages, the cluster to name or None) of every
    check that applies, in the order of CHECKS: a cluster check for each cluster the
    targets act on, any other check once for the run."""
    stages = list(dict.fromkeys(target.stage for target in targets))
    run_ctx = ctx if cluster is None else cluster_context(ctx, cluster)
    clusters = clusters_of(ctx.site, targets)
    several = len(ctx.site.clusters) > 1
    for check_id, check, applies in CHECKS:
        if check_id not in CLUSTER_CHECKS:
            if applies(run_ctx, stages):
                yield check_id, check, run_ctx, stages, None
            continue
        for name in clusters:
            cluster_ctx = cluster_context(ctx, name)
            its_stages = [target.stage for target in targets if target.cluster == name]
            if applies(cluster_ctx, its_stages):
                yield check_id, check, cluster_ctx, its_stages, name if several else None
