"""Comparing what we want with what the cluster has.

``normalized`` drops what the server manages (managedFields, resourceVersion,
uid, status, defaulted bookkeeping annotations...), so a server-side dry-run
result and the live object compare equal exactly when applying would change
nothing the user cares about. ``compact_diff`` is the unified YAML diff
shown by plan, with Secret values masked. ``contained_in`` is the cheap check
that lets a re-run skip even the dry run.
"""

from __future__ import annotations

import difflib

from cubeinstall.core.redaction import MASK, redact
from cubeinstall.core.yamlio import dump_documents
from cubeinstall.kube.objects import DIGEST_ANNOTATION, SERVER_METADATA
from cubeinstall.render.secrets import SECRET_FIELDS, is_secret

BOOKKEEPING_ANNOTATIONS = frozenset({
    DIGEST_ANNOTATION,
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "deprecated.daemonset.template.generation",
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "pv.kubernetes.io/provisioned-by",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
})
DIFF_CONTEXT = 2


def normalized(obj: dict | None) -> dict | None:
    """A copy without server-managed fields (only metadata and status are touched)."""
    if obj is None:
        return None
    result = {key: value for key, value in obj.items() if key != "status"}
    meta = {key: value for key, value in (obj.get("metadata") or {}).items()
            if key not in SERVER_METADATA}
    annotations = {key: value for key, value in (meta.get("annotations") or {}).items()
                   if key not in BOOKKEEPING_ANNOTATIONS}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    result["metadata"] = meta
    return result


def masked(obj: dict | None, other: dict | None = None) -> dict | None:
    """A Secret with its values hidden; a value that differs from ``other`` says so."""
    if not is_secret(obj):
        return obj
    result = dict(obj)
    for field in SECRET_FIELDS:
        values = obj.get(field)
        if not isinstance(values, dict):
            continue
        before = (other or {}).get(field) or {}
        result[field] = {
            key: MASK if other is None or before.get(key) == value else f"{MASK} (changed)"
            for key, value in values.items()
        }
    return result


def compact_diff(live: dict | None, desired: dict | None, name: str = "") -> str:
    """Unified diff of the normalized YAML, Secret values masked."""
    before, after = normalized(live), normalized(desired)
    before_text = dump_documents([masked(before)]) if before is not None else ""
    after_text = dump_documents([masked(after, before)]) if after is not None else ""
    lines = difflib.unified_diff(before_text.splitlines(), after_text.splitlines(),
                                 fromfile=f"live {name}".rstrip(), tofile=f"desired {name}".rstrip(),
                                 n=DIFF_CONTEXT, lineterm="")
    return redact("\n".join(lines))


def same(live: dict | None, result: dict | None) -> bool:
    """Would applying change anything beyond server bookkeeping?"""
    return normalized(live) == normalized(result)


# Maps whose values the API server stores as canonical quantities (cpu 10 -> "10",
# "2000m" -> "2"): compared by amount, or every re-run would ask the server again.
QUANTITY_MAPS = frozenset({"limits", "requests", "capacity", "hard"})


def contained_in(desired, live, quantities: bool = False) -> bool:
    """True when every value we set is already live, exactly (lists: same length).

    A conservative shortcut: False only means "ask the server". Two server habits
    are understood, as our last apply (the digest) set these very values: a quantity
    is stored in its canonical form, and an empty string in a field the server omits
    when empty (a PersistentVolume's storageClassName "") is absent.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(
            (value is None and live.get(key) is None) or
            (value == "" and key not in live) or
            (key in live and contained_in(value, live[key], quantities or key in QUANTITY_MAPS))
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (isinstance(live, list) and len(desired) == len(live) and
                all(contained_in(a, b) for a, b in zip(desired, live)))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if type(desired) is type(live) and desired == live or (
            isinstance(desired, (int, float)) and isinstance(live, (int, float)) and desired == live):
        return True
    return quantities and same_quantity(desired, live)


def same_quantity(desired, live) -> bool:
    from kubernetes.utils.quantity import parse_quantity  # loaded once a cluster is asked

    try:
        return parse_quantity(desired) == parse_quantity(live)
    except ValueError:
        return False


def label_changes(live: dict | None, desired: dict) -> str:
    """The labels ``desired`` adds, changes or removes compared with ``live``, as
    "+key=value, -key" (a Node's label change, said in one line)."""
    before = ((live or {}).get("metadata") or {}).get("labels") or {}
    after = (desired.get("metadata") or {}).get("labels") or {}
    return ", ".join([f"+{key}={value}" for key, value in sorted(after.items())
                      if before.get(key) != value]
                     + [f"-{key}" for key in sorted(before) if key not in after])
