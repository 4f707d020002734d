"""What to do with each object an earlier install (cube-studio's start.sh) left: pure rules.

Per object we render that exists, was written by kubectl and is not ours yet:

- take over as is: ownership moves to cubeinstall, nothing else changes;
- take over with changes: ownership moves, then the next apply changes (diff) or
  removes (what kubectl set and our object does not) fields;
- re-create: a field the server will not change in place differs (named, with the cost);
  a PersistentVolume only when Released with reclaimPolicy Retain, a claim never;
- refuse: data would be at risk; nothing of the plan is done.

Per object written by kubectl in a platform namespace with no counterpart (a leftover):
remove it, or keep it (data, something we cannot prove start.sh made, or site.yaml's
``adopt.keep``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cubeinstall.kube.immutable import recreate_cost
from cubeinstall.kube.objects import target

Action = Literal["take-over", "take-over-with-changes", "re-create", "refuse", "remove", "keep"]
CHANGING = ("take-over", "take-over-with-changes", "re-create", "remove")

# Never removed or re-created by adopt: what holds data or whose removal deletes data
# (a CRD's deletion deletes every custom resource of it).
DATA_KINDS = frozenset({"PersistentVolume", "PersistentVolumeClaim", "Namespace", "Secret",
                        "CustomResourceDefinition"})
# Cluster-scoped kinds a platform namespace's objects reach (RBAC bindings, webhooks):
# one is start.sh's if every namespace it names is a platform namespace.
NAMESPACE_BOUND_KINDS = frozenset({"ClusterRoleBinding", "ValidatingWebhookConfiguration",
                                   "MutatingWebhookConfiguration"})


@dataclass(frozen=True)
class Decision:
    target: str
    action: Action
    reason: str
    stage: str = ""  # the stage whose object it becomes ("" for a leftover)
    fields: tuple[str, ...] = ()  # immutable fields differing, or fields the apply removes
    diff: str = ""

    @property
    def changes_something(self) -> bool:
        return self.action in CHANGING


def for_rendered(stage: str, live: dict, *, changed: bool, diff: str = "",
                 removed: list[str] = (), immutable: list[str] = (),
                 merge_refused: str = "") -> Decision:
    """The decision for an object we render that kubectl wrote. ``changed``: the server's
    dry run of our apply differs from live; ``removed``: fields the next apply drops;
    ``immutable``: fields the dry run says cannot change in place; ``merge_refused``: the
    server refused our fields merged with kubectl's (its message)."""
    name, kind = target(live), live.get("kind", "")
    if immutable:
        fields = tuple(immutable)
        what = ", ".join(fields)
        if kind == "PersistentVolumeClaim":
            return Decision(name, "refuse", f"{what} cannot change and a claim holding data is "
                            "never re-created: keep the site's volume settings "
                            "(volumes.<claim> in site.yaml) equal to the live claim",
                            stage, fields, diff)
        if kind == "PersistentVolume" and not released_and_retained(live):
            phase = (live.get("status") or {}).get("phase") or "unknown"
            policy = (live.get("spec") or {}).get("persistentVolumeReclaimPolicy")
            return Decision(name, "refuse", f"{what} cannot change and the volume is {phase} "
                            f"(reclaimPolicy {policy}): only a Released volume with "
                            "reclaimPolicy Retain is re-created; keep volumes.<claim>.path in "
                            "site.yaml equal to the live volume's", stage, fields, diff)
        if kind in DATA_KINDS - {"PersistentVolume"}:
            return Decision(name, "refuse", f"{what} cannot change and a {kind} is never "
                            "re-created by adopt", stage, fields, diff)
        return Decision(name, "re-create", f"{what} cannot change in place; re-creating it: "
                        f"{recreate_cost(kind)}", stage, fields, diff)
    if merge_refused:
        return Decision(name, "take-over-with-changes", "merged with kubectl's fields our "
                        f"object is refused ({merge_refused}); once its fields are "
                        "cubeinstall's, the next apply replaces kubectl's instead of merging",
                        stage)
    if changed or removed:
        parts = ["the apply changes fields (diff)"] if changed else []
        if removed:
            parts.append("the apply removes what kubectl set and the site does not (a "
                         f"defaulted field gets its default again): {', '.join(removed)}")
        return Decision(name, "take-over-with-changes", "; ".join(parts), stage,
                        tuple(removed), diff)
    return Decision(name, "take-over", "equal to ours: only its field ownership moves", stage)


def released_and_retained(pv: dict) -> bool:
    return ((pv.get("status") or {}).get("phase") == "Released"
            and (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Retain")


def for_leftover(obj: dict, platform_namespaces: frozenset[str], kept: frozenset[str],
                 removed_roles: frozenset[str] = frozenset()) -> Decision:
    """A leftover: written by kubectl, no counterpart among our objects.
    ``removed_roles``: ClusterRoles that only leftover bindings being removed use."""
    name, kind = target(obj), obj.get("kind", "")
    if name in kept:
        return Decision(name, "keep", "site.yaml keeps it (adopt.keep)")
    if kind in DATA_KINDS:
        return Decision(name, "keep", f"a {kind} holds data: never removed by adopt")
    namespace = (obj.get("metadata") or {}).get("namespace")
    if namespace:
        if namespace in platform_namespaces:
            return Decision(name, "remove", f"start.sh leftover in platform namespace "
                            f"{namespace}: no counterpart in this site")
        return Decision(name, "keep", f"namespace {namespace} is not a platform namespace")
    reached = referenced_namespaces(obj)
    if kind in NAMESPACE_BOUND_KINDS and reached and reached <= platform_namespaces:
        return Decision(name, "remove", "start.sh leftover for platform namespace(s) "
                        f"{', '.join(sorted(reached))}: no counterpart in this site")
    if kind == "ClusterRole" and (obj.get("metadata") or {}).get("name") in removed_roles:
        return Decision(name, "remove", "start.sh leftover: only leftover bindings that are "
                        "removed use it")
    return Decision(name, "keep", "cluster-wide and not provably start.sh's: kept "
                    "(delete it yourself if it is not used)")


def referenced_namespaces(obj: dict) -> set[str]:
    """The namespaces a cluster-scoped binding's subjects or a webhook's services are in."""
    kind = obj.get("kind")
    if kind == "ClusterRoleBinding":
        return {s.get("namespace") or "" for s in obj.get("subjects") or []
                if s.get("kind") == "ServiceAccount"} or set()
    if kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        return {((w.get("clientConfig") or {}).get("service") or {}).get("namespace") or ""
                for w in obj.get("webhooks") or []}
    return set()


@dataclass(frozen=True)
class HostPathClash:
    """Our volume would use a host path an existing volume of another name uses."""

    ours: str
    claim: str  # namespace/name of our volume's claim
    path: str
    existing: str


def host_path_clashes(desired_pvs: list[dict], live_pvs: list[dict]) -> list[HostPathClash]:
    """Never a second PersistentVolume for one namespace on a host path (or NFS/local path)
    an existing volume of another name serves there: the namespace's pods would move to a
    new claim beside the old one. Volumes that exist by name are taken over; one path
    shared by volumes of different namespaces is upstream's own design (a claim is per
    namespace)."""
    live_names = {pv["metadata"]["name"] for pv in live_pvs}
    used: dict[tuple[str, str], list[str]] = {}
    for pv in live_pvs:
        path = volume_path(pv)
        if path:
            used.setdefault((path, _claim_namespace(pv)), []).append(pv["metadata"]["name"])
    clashes = []
    for pv in desired_pvs:
        path, name = volume_path(pv), pv["metadata"]["name"]
        if not path or name in live_names:
            continue
        others = used.get((path, _claim_namespace(pv)), [])
        if others:
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            clashes.append(HostPathClash(name, f"{ref.get('namespace')}/{ref.get('name')}",
                                         path, others[0]))
    return clashes


def _claim_namespace(pv: dict) -> str:
    return ((pv.get("spec") or {}).get("claimRef") or {}).get("namespace") or ""


def volume_path(pv: dict) -> str:
    spec = pv.get("spec") or {}
    for source in ("hostPath", "local", "nfs"):
        path = (spec.get(source) or {}).get("path")
        if path:
            server = (spec.get(source) or {}).get("server")
            normal = path.rstrip("/") or "/"
            return f"{server}:{normal}" if server else normal
    return ""


@dataclass
class Survey:
    """What adopt found: decisions, and counts of what needs no decision."""

    decisions: list[Decision] = field(default_factory=list)
    clashes: list[HostPathClash] = field(default_factory=list)
    absent: int = 0  # rendered, not in the cluster: `all` creates them
    ours: int = 0  # already cubeinstall's
    foreign: int = 0  # exists, not written by kubectl: `all` applies over it as before

    @property
    def refusals(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == "refuse"]
