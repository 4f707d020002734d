"""The process-wide set of secret values that must never be printed.

Every Secret registers its value here on creation; the output module passes
every line it writes through ``redact``. That covers the cases where a
library quotes a password back in an exception or a command line.

Only whole values of at least ``MIN_SECRET_LENGTH`` characters are masked: a
short secret (``admin``, ``cube``) would mask ordinary words in names, tables
and hints (``cluster-****``). The site loader refuses shorter secrets, so
every secret a site holds is masked.
"""

from __future__ import annotations

import threading

MASK = "****"
MIN_SECRET_LENGTH = 8
_values: set[str] = set()
_lock = threading.Lock()


def register(value: str) -> None:
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _values.add(value)


def redact(text: str) -> str:
    if not _values or not text:
        return text
    # Longest first, so a secret that contains another is masked whole.
    for value in sorted(_values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_obj(obj):
    """Redact every string inside a JSON-like structure."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {key: redact_obj(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(value) for value in obj]
    return obj
