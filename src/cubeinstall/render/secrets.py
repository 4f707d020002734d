"""Secret objects among rendered ones: which hold secret values, and copies without them.

Secret values live only in the ``data`` and ``stringData`` of v1 Secrets (the
architecture's rule); this module is the one place that knows where they sit, for
`render --out` (files holding them are written 0600), `render --redact` (placeholders
instead of values) and the engine's diffs (masked).
"""

from __future__ import annotations

import base64

SECRET_FIELDS = ("data", "stringData")
PLACEHOLDER = "REDACTED"
_PLACEHOLDER_BASE64 = base64.b64encode(PLACEHOLDER.encode()).decode()


def is_secret(obj: dict | None) -> bool:
    return bool(obj) and obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"


def holds_secret_data(objects: list[dict]) -> bool:
    """Whether any of the objects is a Secret with at least one value."""
    return any(is_secret(obj) and any(obj.get(field) for field in SECRET_FIELDS)
               for obj in objects)


def with_placeholders(obj: dict) -> dict:
    """A Secret whose every value is the placeholder (still valid base64 in ``data``, so the
    object can be applied); any other object unchanged."""
    if not is_secret(obj):
        return obj
    result = dict(obj)
    for field in SECRET_FIELDS:
        values = obj.get(field)
        if isinstance(values, dict):
            placeholder = _PLACEHOLDER_BASE64 if field == "data" else PLACEHOLDER
            result[field] = {key: placeholder for key in values}
    return result
