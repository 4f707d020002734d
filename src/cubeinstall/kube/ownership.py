"""Field ownership of objects kubectl wrote, moved to cubeinstall (as csaupgrade does).

A start.sh site's objects were written by ``kubectl create`` / ``kubectl apply``
(client-side): their managedFields name kubectl's managers with operation Update.
Server-side apply only removes a field that its own Apply entry owned, so applying
over them would merge (kubeflow-watch keeps its old container, an env var ends with
both value and valueFrom). Folding kubectl's field sets into one Apply entry of
cubeinstall makes the next apply remove what our objects no longer set. The patch
is a JSON patch guarded by the object's resourceVersion: a concurrent writer makes
it fail (409) instead of being overwritten.

Field sets are FieldsV1 tries: ``{"f:spec": {"f:replicas": {}}, ...}``; ``"."`` marks
the node itself, ``k:{...}`` a list item by key, ``v:...`` a set member.
"""

from __future__ import annotations

import json

from cubeinstall.kube.objects import FIELD_MANAGER

# The managers kubectl writes as: client-side apply, create, edit, the generic one, and
# the patch/label/annotate start.sh also runs (the gateway's externalIPs, namespace labels).
KUBECTL_MANAGERS = frozenset({"kubectl-client-side-apply", "kubectl-create", "kubectl-edit",
                              "kubectl", "kubectl-patch", "kubectl-label", "kubectl-annotate"})
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
LAST_APPLIED_FIELD = f"f:metadata/f:annotations/f:{LAST_APPLIED}"


def _entries(obj: dict) -> list[dict]:
    return list((obj.get("metadata") or {}).get("managedFields") or [])


def _is_kubectl(entry: dict) -> bool:
    # a status subresource entry is a controller's business, not the object's spec
    return (entry.get("manager") in KUBECTL_MANAGERS and entry.get("operation") == "Update"
            and not entry.get("subresource"))


def kubectl_managers(obj: dict) -> list[str]:
    return sorted({e["manager"] for e in _entries(obj) if _is_kubectl(e)})


def written_by_kubectl(obj: dict) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return bool(kubectl_managers(obj)) or LAST_APPLIED in annotations


# -- field sets --------------------------------------------------------------------------------


def union(a: dict, b: dict) -> dict:
    result = dict(a)
    for key, value in b.items():
        result[key] = union(result[key], value) if key in result else value
    return result


def difference(a: dict, b: dict) -> dict:
    """What ``a`` owns that ``b`` does not (a node ``b`` holds any part of is not reported
    as a whole: only its parts ``b`` lacks)."""
    result = {}
    for key, value in a.items():
        if key == "." and b:  # the node itself stays while b holds any part of it
            continue
        if key not in b:
            result[key] = value
        elif value and b[key]:
            rest = difference(value, b[key])
            if rest:
                result[key] = rest
    return result


def paths(fields: dict, prefix: str = "") -> list[str]:
    """Readable paths of a field set's owned nodes: spec.template.spec.containers[name=x]."""
    found = []
    for key, value in sorted(fields.items()):
        if key == ".":
            continue
        step = _step(key)
        path = f"{prefix}{step}" if step.startswith("[") or not prefix else f"{prefix}.{step}"
        if not value or "." in value:
            found.append(path)
        else:
            found += paths(value, path)
    return found


def _step(key: str) -> str:
    kind, _, rest = key.partition(":")
    if kind == "k":
        try:
            return "[" + ",".join(f"{k}={v}" for k, v in json.loads(rest).items()) + "]"
        except ValueError:
            return f"[{rest}]"
    if kind == "v":
        return f"[{rest}]"
    return rest


def owned_by(obj: dict, manager: str, operation: str = "Apply") -> dict:
    return next((e.get("fieldsV1") or {} for e in _entries(obj)
                 if e.get("manager") == manager and e.get("operation") == operation
                 and not e.get("subresource")), {})


def kubectl_fields(obj: dict) -> dict:
    fields: dict = {}
    for entry in _entries(obj):
        if _is_kubectl(entry):
            fields = union(fields, entry.get("fieldsV1") or {})
    return fields


def others_fields(obj: dict) -> dict:
    """Fields of every manager that is neither kubectl nor cubeinstall's Apply."""
    fields: dict = {}
    for entry in _entries(obj):
        if _is_kubectl(entry) or (entry.get("manager") == FIELD_MANAGER
                                  and entry.get("operation") == "Apply"):
            continue
        fields = union(fields, entry.get("fieldsV1") or {})
    return fields


def removed_by_next_apply(live: dict, dry_run_result: dict) -> list[str]:
    """Paths kubectl set that our object does not and no other manager holds: once
    ownership moved, the next apply removes them (a defaulted one, which kubectl's
    Update entries hold too, comes back with its default). ``dry_run_result``: the
    server's dry run of our apply (its cubeinstall Apply entry is our object's fields)."""
    ours = owned_by(dry_run_result, FIELD_MANAGER)
    gone = difference(difference(kubectl_fields(live), ours), others_fields(live))
    return [path for path in paths(gone) if path != f"metadata.annotations.{LAST_APPLIED}"]


# -- the transfer ------------------------------------------------------------------------------


def transferred(obj: dict) -> list[dict] | None:
    """managedFields with kubectl's entries folded into cubeinstall's Apply entry, or None
    when kubectl owns nothing here."""
    entries = _entries(obj)
    if not any(_is_kubectl(e) for e in entries):
        return None
    fields = union(owned_by(obj, FIELD_MANAGER), kubectl_fields(obj))
    kept = [e for e in entries if not _is_kubectl(e)
            and not (e.get("manager") == FIELD_MANAGER and e.get("operation") == "Apply"
                     and not e.get("subresource"))]
    first = next(e for e in entries if _is_kubectl(e))
    ours = {"manager": FIELD_MANAGER, "operation": "Apply",
            "apiVersion": obj.get("apiVersion") or first.get("apiVersion"),
            "time": first.get("time"), "fieldsType": "FieldsV1", "fieldsV1": fields}
    return [{k: v for k, v in ours.items() if v is not None}, *kept]


def transfer_patch(obj: dict) -> list[dict] | None:
    """The JSON patch moving kubectl's fields to cubeinstall, guarded by resourceVersion."""
    entries = transferred(obj)
    if entries is None:
        return None
    # the server checks the resourceVersion the patch sets: a concurrent write -> 409
    return [{"op": "replace", "path": "/metadata/managedFields", "value": entries},
            {"op": "replace", "path": "/metadata/resourceVersion",
             "value": obj["metadata"]["resourceVersion"]}]
