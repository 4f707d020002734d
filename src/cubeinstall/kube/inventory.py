"""What an earlier kubectl install left in the cluster, and taking it over.

``survey`` reads only: per rendered object one GET and, when kubectl wrote it or it is
ours already (an earlier cubeinstall may have rendered an immutable field otherwise),
one server-side dry run of our apply (forced: what our object would make of it), and
for kubectl's fields our object drops, a dry run of removing them; then one
LIST per resource type and platform namespace for leftovers, and the cluster's volumes.
``carry_out`` writes what the survey decided: ownership transfers (JSON patch guarded by
resourceVersion), re-creations, removals of leftovers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cubeinstall.kube import controllers, ownership, takeover
from cubeinstall.kube.client import ApiResource, KubeClient
from cubeinstall.kube.diff import compact_diff, same
from cubeinstall.kube.errors import BadRequest, KubeError, NotFound, Unsupported
from cubeinstall.kube.immutable import immutable_fields
from cubeinstall.kube.objects import desired_object, is_kept, is_owned, key_of, target
from cubeinstall.site.model import Site

GONE_SECONDS = 120  # how long a deleted object may take to go (finalizers)


@dataclass
class Found:
    """One object the survey decided about, with what carrying it out needs."""

    decision: takeover.Decision
    resource: ApiResource
    live: dict
    desired: dict | None = None  # ours (None for a leftover)


def survey(client: KubeClient, site: Site, stage_objects: dict[str, list[dict]],
           selected: frozenset[str] | None = None) -> tuple[takeover.Survey, list[Found]]:
    """``stage_objects``: every enabled stage's (what counts as a counterpart);
    ``selected``: the stages whose objects are decided (None: all, leftovers included;
    otherwise no leftover is removed: it may be the counterpart's of another version of a
    stage not selected)."""
    result, found = takeover.Survey(), []
    rendered, resources, platform_namespaces, desired_pvs = set(), {}, set(), []
    for stage, objects in stage_objects.items():
        for obj in objects:
            rendered.add(key_of(obj))
            if obj.get("kind") == "Namespace":
                platform_namespaces.add(obj["metadata"]["name"])
            if selected is not None and stage not in selected:
                continue
            try:
                resource = client.resolve(obj["apiVersion"], obj["kind"])
            except Unsupported:  # its CRD comes with an earlier stage: nothing to take over
                result.absent += 1
                continue
            resources[(resource.group, resource.kind)] = resource
            desired = desired_object(obj, stage, resource.namespaced)
            if obj["kind"] == "PersistentVolume":
                desired_pvs.append(desired)
            item = _decide(client, stage, resource, desired, result)
            if item is not None:
                found.append(item)
    leftovers = _leftovers(client, site, list(resources.values()), rendered,
                           frozenset(platform_namespaces))
    if selected is not None:
        leftovers = [_kept_in_part(item) for item in leftovers]
    found += leftovers
    if desired_pvs:
        volumes = client.list(client.resolve("v1", "PersistentVolume"))
        result.clashes = takeover.host_path_clashes(desired_pvs, volumes)
    result.decisions = [item.decision for item in found]
    return result, found


def _decide(client: KubeClient, stage: str, resource: ApiResource, desired: dict,
            result: takeover.Survey) -> Found | None:
    meta = desired["metadata"]
    try:
        live = client.get(resource, meta.get("namespace"), meta["name"])
    except NotFound:
        result.absent += 1
        return None
    ours = (is_owned(live) or is_kept(live)) and not ownership.kubectl_managers(live)
    if not ours and not ownership.written_by_kubectl(live):
        result.foreign += 1
        return None
    try:
        after = client.apply(desired, resource, dry_run=True, force=True, what=target(live))
    except KubeError as error:
        immutable = immutable_fields(error)
        if immutable:  # also for our own objects: an earlier cubeinstall rendered them otherwise
            return Found(takeover.for_rendered(stage, live, changed=True, immutable=immutable),
                         resource, live, desired)
        if ours:  # anything else is `all`'s to report, as for every object of ours
            result.ours += 1
            return None
        if not isinstance(error, BadRequest):
            raise
        # e.g. an env var with kubectl's value and our valueFrom: only a merge is refused
        return Found(takeover.for_rendered(stage, live, changed=True,
                                           merge_refused=error.server_message),
                     resource, live, desired)
    if ours:  # (an apply with --force before adopt labels it, kubectl keeps fields)
        result.ours += 1
        return None
    removed = ownership.removed_by_next_apply(live, after)
    immutable = _removal_refused(client, resource, live, removed)
    if immutable:  # e.g. a volume's hostPath.type kubectl set and ours does not
        return Found(takeover.for_rendered(stage, live, changed=True, immutable=immutable),
                     resource, live, desired)
    changed = not same(live, after)
    diff = compact_diff(live, after, target(live)) if changed else ""
    return Found(takeover.for_rendered(stage, live, changed=changed, diff=diff,
                                       removed=removed), resource, live, desired)


def _removal_refused(client: KubeClient, resource: ApiResource, live: dict,
                     removed: list[str]) -> list[str]:
    """The immutable fields among those the next apply removes: the server's dry run of
    removing them (paths without list items; an answer other than "immutable" is left to
    the apply)."""
    steps = [path.split(".") for path in removed if "[" not in path
             and not path.startswith("metadata.")]
    if not steps:
        return []
    patch = [{"op": "remove", "path": "/" + "/".join(
        part.replace("~", "~0").replace("/", "~1") for part in step)} for step in steps]
    meta = live["metadata"]
    try:
        client.json_patch(resource, meta.get("namespace"), meta["name"], patch,
                          what=target(live), dry_run=True)
    except KubeError as error:
        return immutable_fields(error)
    return []


def _leftovers(client: KubeClient, site: Site, resources: list[ApiResource], rendered: set,
               platform_namespaces: frozenset[str]) -> list[Found]:
    candidates: list[tuple[ApiResource, dict]] = []
    for resource in resources:
        scopes = sorted(platform_namespaces) if resource.namespaced else [None]
        for namespace in scopes:
            try:
                objects = client.list(resource, namespace)
            except NotFound:
                continue
            candidates += [(resource, obj) for obj in objects
                           if key_of(obj) not in rendered and not is_owned(obj)
                           and not is_kept(obj) and ownership.written_by_kubectl(obj)
                           and not (obj.get("metadata") or {}).get("ownerReferences")]
    running = controllers.kept_by_existing(site, [o for _, o in candidates])
    kept = frozenset(site.adopt.keep)

    def decide(obj: dict, roles: frozenset[str] = frozenset()) -> takeover.Decision:
        if target(obj) in running:
            return takeover.Decision(target(obj), "keep", running[target(obj)])
        return takeover.for_leftover(obj, platform_namespaces, kept, roles)

    decided = [(r, o, decide(o)) for r, o in candidates]
    bindings_removed = {o["roleRef"]["name"] for _, o, d in decided
                        if d.action == "remove" and o.get("kind") == "ClusterRoleBinding"}
    still_bound = {o["roleRef"]["name"] for _, o, d in decided
                   if d.action != "remove" and o.get("kind") == "ClusterRoleBinding"}
    roles = frozenset(bindings_removed - still_bound)
    return [Found(decide(o, roles) if o.get("kind") == "ClusterRole" else d, r, o)
            for r, o, d in decided]


def _kept_in_part(item: Found) -> Found:
    if item.decision.action != "remove":
        return item
    return Found(takeover.Decision(item.decision.target, "keep",
                                   "adopt of part of the site (--only/--skip) removes no "
                                   "leftover: run adopt for the whole site to remove it"),
                 item.resource, item.live)


# -- carrying it out ---------------------------------------------------------------------------


def carry_out(client: KubeClient, item: Found) -> str:
    """Do what ``item``'s decision says; returns what was done, in words."""
    action, live = item.decision.action, item.live
    meta = live["metadata"]
    namespace, name = meta.get("namespace"), meta["name"]
    if action in ("take-over", "take-over-with-changes"):
        patch = ownership.transfer_patch(live)
        if patch is None:
            return "nothing of it was kubectl's"
        client.json_patch(item.resource, namespace, name, patch, what=item.decision.target)
        return "its fields are cubeinstall's now"
    if action == "remove":
        client.delete(item.resource, namespace, name)
        return "removed"
    if action == "re-create":
        client.delete(item.resource, namespace, name)
        _wait_gone(client, item.resource, namespace, name, meta.get("uid"))
        client.apply(item.desired, item.resource, what=item.decision.target)
        return "re-created"
    return "left as it is"


def _wait_gone(client: KubeClient, resource: ApiResource, namespace: str | None, name: str,
               uid: str | None) -> None:
    deadline = time.monotonic() + GONE_SECONDS
    while True:
        try:
            current = client.get(resource, namespace, name)
        except NotFound:
            return
        if current["metadata"].get("uid") != uid:
            return
        if time.monotonic() > deadline:
            raise KubeError(f"{resource.kind} {namespace + '/' if namespace else ''}{name}: "
                            f"still there {GONE_SECONDS}s after its deletion",
                            "look at its finalizers (kubectl get -o yaml), then run adopt again")
        time.sleep(0.5)
