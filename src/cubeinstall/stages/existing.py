"""``components.<stage>.mode: existing``: the cluster already runs the component.

Nothing is installed; plan and apply only verify that the CRDs of the objects the
platform creates are there and Established (read-only).
"""

from __future__ import annotations

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.core.errors import StageFailed
from cubeinstall.site.model import Site


def existing(site: Site, stage: str) -> bool:
    return site.component(stage).mode == "existing"


def verify_crds(ctx: RunContext, stage: str, what: str, crds: tuple[str, ...]) -> list[Change]:
    """The CRDs must be there and Established; nothing is written."""
    from cubeinstall.kube.client import client_for
    from cubeinstall.kube.errors import NotFound

    client = client_for(ctx)
    resource = client.resolve("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    problems, changes = [], []
    for name in crds:
        try:
            crd = client.get(resource, None, name)
        except NotFound:
            problems.append(f"CustomResourceDefinition {name} does not exist")
            continue
        conditions = (crd.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in conditions):
            problems.append(f"CustomResourceDefinition {name} is not Established")
            continue
        changes.append(Change(f"CustomResourceDefinition {name}", "unchanged",
                              f"existing {what} (components.{stage}.mode: existing)"))
    if problems:
        raise StageFailed(stage, f"components.{stage}.mode is existing, but the cluster's {what} "
                          "is incomplete: " + "; ".join(problems) + "; nothing was changed",
                          hint=f"install {what} first, or set components.{stage}.mode: install "
                               f"to let cubeinstall install it")
    return changes
