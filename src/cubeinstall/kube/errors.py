"""Typed errors at the Kubernetes boundary.

``client.py`` turns every raw failure (ApiException, urllib3 connection
errors) into one of these, so the engine and the stage modules reason about
classes of failure (not found, conflict, forbidden, unserved API, server
busy, unreachable) instead of HTTP plumbing. The server's own message is
kept: it usually names the field or the other field manager.
"""

from __future__ import annotations

import json
import re

from cubeinstall.core.errors import CubeError, StageFailed


class KubeError(CubeError):
    """A request to the API server failed."""

    status: int = 0
    default_hint: str | None = None  # what to do, when the caller has nothing better

    def __init__(self, message: str, hint: str | None = None, *, status: int | None = None,
                 reason: str = "", server_message: str = "", details: dict | None = None):
        super().__init__(message, hint or self.default_hint)
        if status is not None:
            self.status = status
        self.reason = reason
        self.server_message = server_message or message
        self.details = details or {}


class Unreachable(KubeError):
    """No HTTP answer at all: connection refused or reset, TLS cut, timeout."""


class ServerBusy(KubeError):
    """429 or 5xx: the server is alive but cannot serve this now."""


class BadRequest(KubeError):
    """400 or 422: the object itself is wrong."""


class Unauthorized(KubeError):
    status = 401
    default_hint = ("the API server refused the kubeconfig's credentials: renew them, or check "
                    "clusters[].kubeconfig and context in site.yaml")


class Forbidden(KubeError):
    status = 403
    default_hint = "the kubeconfig's user needs cluster-admin rights"
    #: what the API server says when a right is missing (RBAC); any other 403 is an
    #: admission plugin refusing the change itself, which no right would let through
    MISSING_RIGHT = re.compile(r'User "[^"]*" cannot ', re.IGNORECASE)
    ADMISSION_HINT = ("not a missing right: an admission rule of the cluster refuses this "
                      "change (the message says which and why)")


class NotFound(KubeError):
    status = 404


class Conflict(KubeError):
    status = 409

    @property
    def managers(self) -> list[str]:
        """The other field managers named in a server-side apply conflict."""
        return sorted(set(re.findall(r'conflicts? with "([^"]+)"', self.server_message)))

    @property
    def is_field_conflict(self) -> bool:
        causes = self.details.get("causes") or []
        return any(c.get("type") == "FieldManagerConflict" for c in causes) or bool(self.managers)


class Unsupported(KubeError):
    """The cluster does not serve this apiVersion/kind (decided by discovery)."""


_BY_STATUS = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
              409: Conflict, 422: BadRequest, 429: ServerBusy}


def from_status(status: int, body: bytes | str | None, what: str = "") -> KubeError:
    """The typed error for an HTTP error answer; ``body`` is the server's Status JSON."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    reason, message, details = "", text.strip(), {}
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        reason = parsed.get("reason") or ""
        message = parsed.get("message") or message
        details = parsed.get("details") or {}
    cls = _BY_STATUS.get(status) or (ServerBusy if status >= 500 else KubeError)
    hint = None
    if cls is Forbidden and message and not Forbidden.MISSING_RIGHT.search(message):
        hint = Forbidden.ADMISSION_HINT
    prefix = f"{what}: " if what else ""
    return cls(f"{prefix}{message or f'HTTP {status}'}", hint, status=status, reason=reason,
               server_message=message, details=details)


class ApplyFailed(StageFailed):
    """The engine could not bring objects of a stage to the desired state."""

    def __init__(self, stage: str, message: str, hint: str | None = None,
                 targets: tuple[str, ...] = ()):
        super().__init__(stage, message, hint)
        self.targets = targets
