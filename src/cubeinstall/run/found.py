"""What a site leaves to be found in the clusters, filled in before stages render.

- ``components.kubeflow.mode: existing``: the running argo-server's Service in the
  platform cluster, which the gateway's /argo/ route points at (stages/kubeflow.py
  with_existing_server);
- the volume each claim is bound to, which it keeps (stages/bound_volumes.py: the
  platform volumes of pv-pvc, and the mysql, prometheus and efk volumes), in each cluster
  such a stage runs on: pv-pvc and prometheus run on every cluster, and each cluster's
  view of the site (``Site.found_volumes``) has that cluster's own.

`all`, `stage`, `plan`, `adopt` and `status --live` look, so that each compares with the
same objects; plan --offline and render do not: they show the site's own desired state.
What a run found is kept in the journal (``remember``): plain `status`, which asks no
cluster, renders with it (``with_remembered``) to tell whether a stage's inputs changed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterable, TypeVar

from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import CubeError
from cubeinstall.run.journal import Journal
from cubeinstall.run.targets import Target, clusters_of
from cubeinstall.site.model import Found, Site

# the gateway routes to the server; the kubeflow stage's plan line names it
SERVER_STAGES = frozenset({"gateway", "kubeflow"})
# the stages that render host path volumes (through stages/bound_volumes.keep_bound)
VOLUME_STAGES = frozenset({"pv-pvc", "mysql", "prometheus", "efk"})
T = TypeVar("T")


def with_found(ctx: RunContext, targets: Iterable[Target]) -> RunContext:
    """``ctx`` with what the clusters the ``targets`` act on have for their stages. A
    cluster that does not answer (unreachable, untrusted, refusing) finds nothing, said in
    a warning: its stages meet the same answer and report it as in any run (a dry run
    goes on)."""
    from cubeinstall.kube.errors import KubeError
    from cubeinstall.stages.bound_volumes import bound_volumes
    from cubeinstall.stages.kubeflow import with_existing_server

    targets = list(targets)
    site = ctx.site
    if SERVER_STAGES & {target.stage.name for target in targets}:
        try:
            site = _asked(ctx, with_existing_server)
        except KubeError as exc:
            _not_found(ctx, site.platform_cluster.name, "the argo-server Service", exc)
    volumes = {}
    for cluster in clusters_of(site, [t for t in targets if t.stage.name in VOLUME_STAGES]):
        try:
            volumes[cluster] = _asked(dataclasses.replace(ctx, cluster=cluster), bound_volumes)
        except KubeError as exc:
            _not_found(ctx, cluster, "the volumes its claims are bound to", exc)
    if volumes != site.found.volumes:
        site = site.model_copy(update={"found": site.found.model_copy(update={"volumes": volumes})})
    return ctx if site is ctx.site else dataclasses.replace(ctx, site=site)


def _asked(ctx: RunContext, lookup: Callable[[RunContext], T]) -> T:
    """``lookup(ctx)`` retried as a stage's requests are: the first to meet an unreachable
    cluster, it spends and says that cluster's retries ("retrying (1/2) ...")."""
    from cubeinstall.kube.client import client_for
    from cubeinstall.kube.retry import call_within_outage

    deadline = time.monotonic() + ctx.site.timeouts.object_seconds
    return call_within_outage(lambda: lookup(ctx), client_for(ctx).outage, deadline,
                              say=ctx.out.warn)


def _not_found(ctx: RunContext, cluster: str, what: str, exc: CubeError) -> None:
    ctx.out.warn(f"cluster {cluster}: {what} not read: {exc.message}", cluster=cluster,
                 hint=exc.hint)


def remember(journal: Journal, site: Site, targets: Iterable[Target]) -> None:
    """Keep in the journal what ``with_found`` found for these targets (the volumes of the
    clusters it read, the argo-server when a stage routing to it runs), saved with the
    journal's next record."""
    names = {target.stage.name for target in targets}
    found = dict(journal.found)
    if VOLUME_STAGES & names:  # the clusters read now replace their earlier entries
        found["volumes"] = {**found.get("volumes", {}), **site.found.model_dump()["volumes"]}
    if SERVER_STAGES & names:
        found["kubeflow_server"] = site.component("kubeflow").server
    journal.found = found


def with_remembered(ctx: RunContext, journal: Journal) -> RunContext:
    """``ctx`` with what the latest runs found (``remember``), asking no cluster: the
    site.yaml's own kubeflow server stays."""
    from cubeinstall.stages.kubeflow import STAGE

    site, found = ctx.site, journal.found
    if found.get("volumes"):
        site = site.model_copy(update={"found": Found.model_validate(
            {"volumes": found["volumes"]})})
    component = site.component(STAGE)
    if found.get("kubeflow_server") and component.mode == "existing" and not component.server:
        components = {**site.components, STAGE: component.model_copy(
            update={"server": found["kubeflow_server"]})}
        site = site.model_copy(update={"components": components})
    return ctx if site is ctx.site else dataclasses.replace(ctx, site=site)
