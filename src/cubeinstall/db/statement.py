"""One SQL statement with its parameters, and how a plan shows it.

The SQL text holds only validated, quoted identifiers and ``%s``
placeholders; values go to the server as parameters. ``display`` renders
the statement for people, with every secret parameter shown as ``'****'``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cubeinstall.site.secrets import MASK, Secret


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[Any, ...] = ()

    def args(self) -> tuple[Any, ...]:
        """The parameters as the driver gets them (secrets revealed only here)."""
        return tuple(p.reveal() if isinstance(p, Secret) else p for p in self.params)

    def display(self) -> str:
        from pymysql.converters import escape_item

        shown = tuple(f"'{MASK}'" if isinstance(p, Secret) else escape_item(p, "utf8mb4")
                      for p in self.params)
        return self.sql % shown if shown else self.sql

    def execute(self, cursor) -> int:
        return cursor.execute(self.sql, self.args() or None)

    def __str__(self) -> str:
        return self.display()
