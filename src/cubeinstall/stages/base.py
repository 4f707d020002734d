"""What every stage module works with: the run context and the change record.

A stage module (``cubeinstall.stages.<module>``) exposes two functions:

    plan(ctx: RunContext) -> list[Change]     # reads only, changes nothing
    apply(ctx: RunContext) -> list[Change]    # brings the target to the desired state

and, for stages whose desired state is Kubernetes objects, a pure
``render(site) -> list[dict]``. Each Change names its target the way a user
would look it up ("Deployment infra/mysql", "node1:/etc/fstab",
"database kubeflow") and says create/update/delete/unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from cubeinstall.output import Output
    from cubeinstall.site.model import Site

Action = Literal["create", "update", "delete", "unchanged", "run", "skip"]
CHANGING_ACTIONS = ("create", "update", "delete", "run")


@dataclass(frozen=True)
class Change:
    target: str
    action: Action
    detail: str = ""
    diff: str = ""

    @property
    def changes_something(self) -> bool:
        return self.action in CHANGING_ACTIONS

    def as_event(self) -> dict[str, Any]:
        return {"target": self.target, "action": self.action, "detail": self.detail,
                "diff": self.diff}


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    assume_yes: bool = False
    trust_new_hosts: bool = False  # SSH trust on first use, recorded in known_hosts
    prune: bool = False
    force: bool = False
    kubeconfig: Path | None = None  # overrides the platform cluster's kubeconfig
    context: str | None = None


@dataclass
class RunContext:
    site: "Site"
    out: "Output"
    options: RunOptions = RunOptions()
    config_path: Path | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def dry_run(self) -> bool:
        return self.options.dry_run

    def kubeconfig_for(self, cluster_name: str | None = None) -> tuple[Path, str | None]:
        """Kubeconfig path and context of a cluster; CLI flags override the platform cluster."""
        cluster = self.site.platform_cluster
        if cluster_name is not None:
            cluster = next(c for c in self.site.clusters if c.name == cluster_name)
        if cluster is self.site.platform_cluster and self.options.kubeconfig:
            return self.options.kubeconfig, self.options.context or cluster.context
        return cluster.kubeconfig, cluster.context

    def cached(self, key: str, factory):
        """One client per key (cluster, database, ...) for the whole run."""
        if key not in self._clients:
            self._clients[key] = factory()
        return self._clients[key]
