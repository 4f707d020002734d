"""Fields the API server will not change in place, and what re-creating the object costs.

The server names the field in its 422 answer (``details.causes[].field``): a
Deployment's ``spec.selector``, a binding's ``roleRef``, a headless Service's
``spec.clusterIPs``, a PersistentVolume's source. One such answer is a 403 instead: a
claim's size on a volume no storage class provisioned (the resize admission plugin
refuses it; a start.sh site's claims are all such). Neither a retry nor forcing field
ownership (``--force``) helps there: the object has to be re-created, which is what
``cubeinstall adopt`` plans (and, for data, refuses).
"""

from __future__ import annotations

import re

from cubeinstall.kube.errors import BadRequest, Forbidden, KubeError

_IMMUTABLE = re.compile(r"immutable|cannot change|may not change once set|"
                        r"field is not allowed to be changed", re.IGNORECASE)
_FIELD_IN_MESSAGE = re.compile(r"(?:^|: )([A-Za-z][\w.\[\]-]*): (?:Invalid value|Forbidden)")
_NOT_RESIZABLE = "only dynamically provisioned pvc can be resized"
CLAIM_SIZE = "spec.resources.requests.storage"

# What deleting and creating an object again costs, by kind.
RECREATE_COST = {
    "Deployment": "its pods are replaced at once (no rolling update)",
    "StatefulSet": "its pods are replaced (claims of its volumeClaimTemplates are kept)",
    "DaemonSet": "its pods on every node are replaced",
    "Job": "its pods are started again",
    "Service": "its ClusterIP changes: clients holding the old address lose it until they "
               "look the name up again",
    "ClusterRoleBinding": "the subjects lose these rights between the delete and the create",
    "RoleBinding": "the subjects lose these rights between the delete and the create",
    "PersistentVolume": "the volume object is replaced; the files on the storage stay",
}


def immutable_fields(error: KubeError) -> list[str]:
    """The fields an invalid-object answer says cannot change; [] for any other error."""
    if isinstance(error, Forbidden) and _NOT_RESIZABLE in error.server_message:
        return [CLAIM_SIZE]
    if not isinstance(error, BadRequest):
        return []
    causes = error.details.get("causes") or []
    fields = [c.get("field") or "" for c in causes if _IMMUTABLE.search(c.get("message") or "")]
    if not fields and _IMMUTABLE.search(error.server_message):
        fields = _FIELD_IN_MESSAGE.findall(error.server_message) or [""]
    return sorted({f or "(unnamed field)" for f in fields})


def is_immutable(error: KubeError) -> bool:
    return bool(immutable_fields(error))


def recreate_cost(kind: str) -> str:
    return RECREATE_COST.get(kind, "the object is absent between the delete and the create")
