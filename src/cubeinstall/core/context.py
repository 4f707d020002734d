"""What every stage and engine works with during one run: the site, the output, the options."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from cubeinstall.core.output import Output
    from cubeinstall.site.model import Site


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    trust_new_hosts: bool = False  # SSH trust on first use, recorded in known_hosts
    prune: bool = False
    force: bool = False
    kubeconfig: Path | None = None  # overrides the platform cluster's kubeconfig
    context: str | None = None
    jobs: int = 1  # stages run at once (apply only; a plan runs them one by one)


@dataclass
class Planned:
    """What the earlier stages of one plan would create: a later stage's objects in those
    namespaces, or of those custom kinds, are planned as creations instead of failing
    the server's dry-run (the plan of a whole site before anything exists).

    ``created_namespaces``: those an earlier stage of this run did create (on this
    cluster, in this process). Nothing in them predates the run, so a later stage need
    not ask whether its objects there exist already: they are created directly."""

    namespaces: set[str] = field(default_factory=set)
    kinds: set[tuple[str, str]] = field(default_factory=set)  # (group, kind) of planned CRDs
    created_namespaces: set[str] = field(default_factory=set)


@dataclass
class RunContext:
    site: "Site"
    out: "Output"
    options: RunOptions = RunOptions()
    planned: Planned = field(default_factory=Planned)  # of the cluster this context targets
    cluster: str | None = None  # the cluster its stages act on; None: the platform cluster
    cluster_plans: dict[str, Planned] = field(default_factory=dict)  # each cluster's `planned`
    # cluster name -> where its kubeconfig comes from ("--kubeconfig", "KUBECONFIG",
    # "site.yaml"), for errors that say what to fix
    kubeconfig_origins: dict[str, str] = field(default_factory=dict)
    # cluster name -> the stages this run applies there (run/runner.py): their engines
    # share one snapshot of what those stages have live (kube/snapshot.py)
    run_stages: dict[str, frozenset[str]] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _clients_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def dry_run(self) -> bool:
        return self.options.dry_run

    @property
    def cluster_name(self) -> str:
        """The cluster this context targets."""
        return self.cluster or self.site.platform_cluster.name

    def kubeconfig_for(self, cluster_name: str | None = None) -> tuple[Path, str | None]:
        """Kubeconfig path and context of a cluster (default: the one this context targets);
        CLI flags override the platform cluster."""
        name = cluster_name or self.cluster_name
        cluster = next(c for c in self.site.clusters if c.name == name)
        if name == self.site.platform_cluster.name and self.options.kubeconfig:
            return self.options.kubeconfig, self.options.context or cluster.context
        return cluster.kubeconfig, cluster.context

    def cached(self, key: str, factory: Callable[[], Any]) -> Any:
        """One client per key (cluster, database, ...) for the whole run, also when stages
        running at once ask for it together."""
        with self._clients_lock:
            if key not in self._clients:
                self._clients[key] = factory()
            return self._clients[key]
