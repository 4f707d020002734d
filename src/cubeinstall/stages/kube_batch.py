"""kube-batch: the gang scheduler of the 2021 platform -- only for Kubernetes older than 1.22.

kube-batch's last release (v0.5.0, 2019) defines its CRDs with
apiextensions.k8s.io/v1beta1, which Kubernetes 1.22 removed; the project is archived
and volcano (its successor, stage ``volcano``) schedules gangs on current clusters.
So plan and apply first ask the server its version and refuse on 1.22 or newer, before
touching anything. Off by default.
"""

from __future__ import annotations

import re

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import StageFailed
from cubeinstall.render.engine import render_stage
from cubeinstall.site.model import Site
from cubeinstall.upstream import patches

STAGE = "kube-batch"
NAMESPACE = "kube-system"
IMAGE = "docker.io/kubesigs/kube-batch:v0.5"
REMOVED_IN = (1, 22)


def render(site: Site) -> list[dict]:
    objects = render_stage(STAGE, namespace=NAMESPACE, image=IMAGE)
    return patches.for_site(objects, site, None)


def check(ctx: RunContext) -> list[Change]:
    """Before plan and apply: the cluster still serves kube-batch's APIs."""
    refuse_if_unsupported(server_version(ctx))
    return []


def server_version(ctx: RunContext) -> str:
    from cubeinstall.kube.client import client_for

    return client_for(ctx).server_version()


def refuse_if_unsupported(version: str) -> None:
    """StageFailed on Kubernetes >= 1.22 (or an unreadable version): nothing is applied."""
    found = re.match(r"^v?(\d+)\.(\d+)", version or "")
    if found and (int(found.group(1)), int(found.group(2))) < REMOVED_IN:
        return
    why = (f"the cluster runs Kubernetes {version}, and kube-batch v0.5.0 needs "
           "apiextensions.k8s.io/v1beta1 CustomResourceDefinitions, removed in Kubernetes 1.22"
           if found else f"cannot tell the cluster's Kubernetes version ({version!r}), and "
           "kube-batch v0.5.0 only works before 1.22")
    raise StageFailed(STAGE, f"{why}; nothing was applied",
                      hint="use volcano for gang scheduling (stage volcano, on by default) and "
                           "turn kube-batch off: components: {kube-batch: {enabled: false}}")
