"""What a site leaves to be found in the cluster, filled in before stages render.

- ``components.kubeflow.mode: existing``: the running argo-server's Service, which the
  gateway's /argo/ route points at (stages/kubeflow.py with_existing_server);
- the volume each claim is bound to, which it keeps (stages/bound_volumes.py: the
  platform volumes of pv-pvc, and the mysql, prometheus and efk volumes).

Only the platform cluster is looked at (another cluster's view of the site has no
``found``); plan --offline and render do not look: they show the site's own desired state.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from cubeinstall.core.context import RunContext


def with_found(ctx: RunContext, stages: Iterable[str] | None = None) -> RunContext:
    """``ctx`` with what its platform cluster has for the selected ``stages`` (None: all).
    A cluster that does not answer (unreachable, untrusted, refusing) finds nothing: the
    stages meet the same answer and report it as in any run (a dry run goes on)."""
    from cubeinstall.kube.errors import KubeError
    from cubeinstall.stages.kubeflow import with_existing_server
    from cubeinstall.stages.bound_volumes import with_bound_volumes

    wanted = None if stages is None else set(stages)
    site = ctx.site
    # the gateway routes to the server; the kubeflow stage's plan line names it
    for stages_using, find in (({"gateway", "kubeflow"}, with_existing_server),
                               ({"pv-pvc", "mysql", "prometheus", "efk"}, with_bound_volumes)):
        if wanted is not None and not stages_using & wanted:
            continue
        try:
            site = find(dataclasses.replace(ctx, site=site))
        except KubeError:
            return ctx
    return ctx if site is ctx.site else dataclasses.replace(ctx, site=site)
