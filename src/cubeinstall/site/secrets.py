"""Secret values and the references that produce them.

In site.yaml a secret is written as a reference, never inline in real sites:
``${env:NAME}`` or ``{file: PATH}``. (A plain string is accepted too, for
throwaway demos; it is still held and masked as a secret.)

A ``Secret`` never shows its value in str/repr/JSON; every value resolved is
also registered with ``output.redact`` so that no printed text can carry it,
even when a library embeds it in an exception message. A value shorter than
``redaction.MIN_SECRET_LENGTH`` cannot be masked without garbling ordinary
words, so the site refuses it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from cubeinstall.core import redaction

_ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
MASK = "****"


class Secret:
    """A resolved secret value with the description of where it came from."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str):
        self._value = value
        self.source = source
        redaction.register(value)

    def reveal(self) -> str:
        """The clear value: call only where it is handed to a server or a Secret object."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.source}, {MASK})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler):
        return core_schema.with_info_plain_validator_function(
            _validate_secret,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda s: repr(s)),
        )


def _validate_secret(value: Any, info: core_schema.ValidationInfo) -> Secret:
    if isinstance(value, Secret):
        return value
    return _long_enough(_resolve(value, info))


def _long_enough(secret: Secret) -> Secret:
    if len(secret.reveal()) < redaction.MIN_SECRET_LENGTH:
        raise PydanticCustomError(
            "secret_too_short",
            "the secret ({source}) is shorter than {minimum} characters: too short to be masked "
            "safely in output; use a longer value",
            {"source": secret.source, "minimum": redaction.MIN_SECRET_LENGTH},
        )
    return secret


def _resolve(value: Any, info: core_schema.ValidationInfo) -> Secret:
    base_dir = Path((info.context or {}).get("base_dir", "."))
    if isinstance(value, dict):
        if set(value) != {"file"} or not isinstance(value["file"], str):
            raise PydanticCustomError(
                "secret_ref",
                "a secret reference mapping takes exactly one key, file: PATH (got keys {keys})",
                {"keys": ", ".join(map(str, value)) or "none"},
            )
        return _from_file(value["file"], base_dir)
    if isinstance(value, str):
        match = _ENV_REF.match(value.strip())
        if match:
            return _from_env(match.group(1))
        if value.startswith("${"):
            raise PydanticCustomError(
                "secret_ref",
                "unknown secret reference syntax; write $${env:NAME} or {file: PATH}",
            )
        return Secret(value, "inline value")
    raise PydanticCustomError(
        "secret_ref", "expected a secret: $${env:NAME}, {file: PATH} or a string"
    )


def _from_env(name: str) -> Secret:
    value = os.environ.get(name)
    if value is None:
        raise PydanticCustomError(
            "secret_missing",
            "environment variable {name} is not set; export it or use {file: PATH}",
            {"name": name},
        )
    return Secret(value, f"env:{name}")


def _from_file(raw_path: str, base_dir: Path) -> Secret:
    path = Path(os.path.expanduser(raw_path))
    if not path.is_absolute():
        path = base_dir / path
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise PydanticCustomError(
            "secret_missing",
            "cannot read secret file {path}: {reason}",
            {"path": str(path), "reason": exc.strerror or str(exc)},
        ) from None
    return Secret(value, f"file:{raw_path}")
