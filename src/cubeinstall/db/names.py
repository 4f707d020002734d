"""SQL identifiers: validated strictly, then backtick-quoted; charsets compared by meaning.

Identifiers (database, table, column names) cannot be query parameters, so
they are the one thing put into SQL text: only after they match a strict
pattern (letters, digits, underscore), which leaves nothing to escape.
Every value (passwords, defaults, user names, charsets) travels as a
parameter instead.
"""

from __future__ import annotations

import re

from cubeinstall.core.errors import ConfigError

IDENTIFIER = re.compile(r"^[A-Za-z0-9_]{1,64}\Z")
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_]{1,32}\Z")
CHARSET_NAME = re.compile(r"^[a-z0-9_]{1,64}\Z")

# MySQL 8 and MariaDB >= 10.6 read `utf8` back as `utf8mb3`; they are one charset.
_CHARSET_ALIASES = {"utf8": "utf8mb3"}


def _checked(value: object, pattern: re.Pattern, what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ConfigError(
            f"invalid {what} {value!r}: {rule}",
            hint="use only letters, digits and underscore; nothing was sent to the server",
        )
    return value


def identifier(value: object, what: str) -> str:
    """``value`` if it is a safe identifier (database, table, column), else ConfigError."""
    return _checked(value, IDENTIFIER, what, "1-64 letters, digits or underscores")


def quoted(value: object, what: str) -> str:
    """The validated identifier in backticks, ready for SQL text."""
    return f"`{identifier(value, what)}`"


def account_name(value: object, what: str = "MySQL user name") -> str:
    return _checked(value, ACCOUNT_NAME, what, "1-32 letters, digits or underscores")


def charset_name(value: object, what: str) -> str:
    return _checked(value, CHARSET_NAME, what, "lower-case letters, digits or underscores")


def canonical_charset(name: str) -> str:
    name = name.lower()
    return _CHARSET_ALIASES.get(name, name)


def canonical_collation(name: str) -> str:
    """``utf8_general_ci`` and ``utf8mb3_general_ci`` are the same collation."""
    name = name.lower()
    charset, sep, rest = name.partition("_")
    return canonical_charset(charset) + sep + rest


def same_charset(a: str, b: str) -> bool:
    return canonical_charset(a) == canonical_charset(b)


def same_collation(a: str, b: str) -> bool:
    return canonical_collation(a) == canonical_collation(b)
