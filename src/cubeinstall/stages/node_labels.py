"""node-labels: each node's labels from its roles, applied before anything selects on them.

The labels are applied with server-side apply, so the API server records that
cubeinstall owns them: a role removed from site.yaml removes its label, while
labels set by anyone else are never touched. Nodes are never created: a node
named in site.yaml that the cluster does not have is an error.
"""

from __future__ import annotations

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import StageFailed
from cubeinstall.render.engine import render_stage
from cubeinstall.site import platform
from cubeinstall.site.model import Site
from cubeinstall.stages import cluster

STAGE = "node-labels"


def render(site: Site) -> list[dict]:
    nodes = [{"name": node.name, "labels": platform.node_labels(node)} for node in site.nodes]
    return render_stage(STAGE, nodes=nodes)


def describe(site: Site) -> list[Change]:
    """Offline plan: the labels each node gets (Nodes are labelled, never created)."""
    return [Change(f"Node {node.name}", "label", "offline plan: " + ", ".join(
        f"{key}={value}" for key, value in platform.node_labels(node).items()))
        for node in site.nodes]


def check(ctx: RunContext) -> list[Change]:
    """Nodes are never created: every node of site.yaml must be in the cluster."""
    kube = cluster.client(ctx)
    present = {node["metadata"]["name"] for node in kube.list(kube.resolve("v1", "Node"))}
    missing = [node.name for node in ctx.site.nodes if node.name not in present]
    if missing:
        raise StageFailed(
            STAGE,
            f"node(s) {', '.join(missing)} named in site.yaml are not in the cluster "
            f"(it has: {', '.join(sorted(present)) or 'no nodes'})",
            hint="use the Kubernetes node names (kubectl get nodes) as nodes[].name",
        )
    return []
