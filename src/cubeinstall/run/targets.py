"""Targets: each selected stage at each place it runs, from the registry's scopes.

cube-studio runs its web platform on the first cluster and notebooks, pipelines,
training and inference on every cluster of config.py's CLUSTERS. A stage's scope
(site/stages.py) says where it runs: NODES and REGISTRY once for the site,
PLATFORM on the first cluster, EVERY_CLUSTER on each cluster whose view of the
site (``Site.for_cluster``: its own nodes) enables it. Targets keep the registry
order, stage by stage; a target waits for its prerequisites' targets on its own
cluster, so a failure on one cluster stops nothing on the others.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cubeinstall.core.context import Planned, RunContext
from cubeinstall.core.errors import ConfigError
from cubeinstall.site.model import Site
from cubeinstall.site import stages as registry
from cubeinstall.site.stages import Scope, Stage


@dataclass(frozen=True)
class Target:
    stage: Stage
    cluster: str | None  # None: a node or registry stage, run once for the whole site
    key: str  # its record in the journal
    label: str  # how lines and errors name it

    @property
    def fields(self) -> dict:
        """What its events carry besides the stage: the cluster, on a site of several."""
        return {"cluster": self.cluster} if self.label != self.stage.name else {}


def check_cluster(site: Site, name: str | None, option: str = "--cluster") -> None:
    if name is not None and name not in site.cluster_names:
        raise ConfigError(f"{option}: unknown cluster {name!r}",
                          hint=f"the site's clusters: {', '.join(site.cluster_names)}")


def expand(site: Site, stages: list[Stage], cluster: str | None = None) -> list[Target]:
    """The targets of the selected stages; ``cluster``: only that cluster's (no node or
    registry stage: they belong to the whole site)."""
    check_cluster(site, cluster)
    chosen = site.cluster_names if cluster is None else (cluster,)
    targets = []
    for stage in stages:
        if stage.scope in (Scope.NODES, Scope.REGISTRY):
            if cluster is None:
                targets.append(Target(stage, None, stage.name, stage.name))
            continue
        runs_on = site.cluster_names if stage.scope is Scope.EVERY_CLUSTER else site.cluster_names[:1]
        targets += [cluster_target(site, stage, name) for name in runs_on
                    if name in chosen and stage.enabled(site.for_cluster(name))]
    return targets


def cluster_target(site: Site, stage: Stage, cluster: str) -> Target:
    """The platform cluster's records keep the stage's name as key (journals written
    before sites had several clusters stay valid); another cluster's key is stage@cluster."""
    platform = site.platform_cluster.name
    key = stage.name if cluster == platform else f"{stage.name}@{cluster}"
    label = stage.name if len(site.clusters) == 1 else f"{stage.name} (cluster {cluster})"
    return Target(stage, cluster, key, label)


def prerequisites(target: Target, targets: list[Target]) -> frozenset[str]:
    """Keys of the targets of this run it waits for: those of its prerequisite stages
    on its own cluster, or of the site (a node or registry stage), or of the platform
    cluster (a platform stage)."""
    needed = registry.prerequisites(target.stage)
    return frozenset(other.key for other in targets if other.stage.name in needed
                     and (other.cluster in (None, target.cluster)
                          or other.stage.scope is Scope.PLATFORM))


def context_for(ctx: RunContext, target: Target) -> RunContext:
    """The run context of a target: a cluster's view of the site and its own plan's
    ``planned`` (kept across the run in ``cluster_plans``); clients stay shared."""
    return ctx if target.cluster is None else cluster_context(ctx, target.cluster)


def cluster_context(ctx: RunContext, cluster: str) -> RunContext:
    """The run context of one cluster: its view of the site, its client, its plan."""
    return dataclasses.replace(ctx, site=ctx.site.for_cluster(cluster), cluster=cluster,
                               planned=ctx.cluster_plans.setdefault(cluster, Planned()))


def clusters_of(site: Site, targets: list[Target]) -> list[str]:
    """The clusters the targets act on, in the site's order."""
    acted_on = {target.cluster for target in targets}
    return [name for name in site.cluster_names if name in acted_on]
