"""How a failed object is reported: one message naming it, the cause and the fix."""

from __future__ import annotations

from cubeinstall.kube.errors import (
    ApplyFailed,
    Conflict,
    Forbidden,
    KubeError,
    Unauthorized,
)
from cubeinstall.kube.immutable import immutable_fields
from cubeinstall.kube.ownership import KUBECTL_MANAGERS
from cubeinstall.kube.retry import is_transient

MAX_LISTED = 5  # failures quoted in full; the rest are counted


def object_failure(stage: str, name: str, error: KubeError) -> ApplyFailed:
    message = error.server_message
    immutable = immutable_fields(error)
    if immutable:  # neither a retry nor --force changes these: the object must be re-created
        return ApplyFailed(
            stage, f"{name}: cannot be changed in place ({', '.join(immutable)}): {message}",
            "`cubeinstall adopt -c SITE` plans re-creating it (and says what that costs; "
            "volumes and claims are never re-created while in use); --force does not help "
            "here", targets=(name,))
    if isinstance(error, Conflict) and error.is_field_conflict:
        managers = ", ".join(error.managers) or "another field manager"
        if set(error.managers) & KUBECTL_MANAGERS:  # written by kubectl: start.sh's site
            return ApplyFailed(
                stage, f"{name}: fields are owned by {managers}: {message}",
                "the object was written with kubectl (e.g. by cube-studio's start.sh): "
                "`cubeinstall adopt -c SITE` moves its fields to cubeinstall and plans what "
                "cannot be changed in place", targets=(name,))
        return ApplyFailed(
            stage, f"{name}: fields are owned by {managers}: {message}",
            f"let cubeinstall take them over (force conflicts, --force), or stop {managers} "
            f"from managing them", targets=(name,))
    if isinstance(error, (Forbidden, Unauthorized)) and not is_transient(error):
        what = "forbidden" if isinstance(error, Forbidden) else "credentials refused"
        return ApplyFailed(stage, f"{name}: {what}: {message}", error.hint, targets=(name,))
    if is_transient(error):
        return ApplyFailed(stage, f"{name}: still failing at the deadline: {message}",
                           error.hint or "check the API server and its webhooks", targets=(name,))
    return ApplyFailed(stage, f"{name}: rejected by the API server: {message}",
                       error.hint or "fix the object in the stage's manifests", targets=(name,))


def merge_failures(stage: str, phase: str, failures: list[ApplyFailed]) -> ApplyFailed:
    if len(failures) == 1:
        return failures[0]
    prefix = f"stage {stage}: "
    lines = "\n  ".join(f.message.removeprefix(prefix) for f in failures[:MAX_LISTED])
    more = f"\n  ... and {len(failures) - MAX_LISTED} more" if len(failures) > MAX_LISTED else ""
    targets = tuple(t for f in failures for t in f.targets)
    return ApplyFailed(stage, f"{len(failures)} objects of phase {phase} failed:\n  {lines}{more}",
                       failures[0].hint, targets)
