"""The change record every stage and engine reports.

A Change names its target the way a user would look it up ("Deployment
infra/mysql", "node1:/etc/fstab", "database kubeflow") and says what happens to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# "label": a Node's labels written (Nodes are never created, only labelled)
Action = Literal["create", "update", "label", "delete", "unchanged", "run", "skip"]
CHANGING_ACTIONS = ("create", "update", "label", "delete", "run")


@dataclass(frozen=True)
class Change:
    target: str
    action: Action
    detail: str = ""
    diff: str = ""

    @property
    def changes_something(self) -> bool:
        return self.action in CHANGING_ACTIONS

    def as_event(self) -> dict[str, Any]:
        return {"target": self.target, "action": self.action, "detail": self.detail,
                "diff": self.diff}


def count_changing(changes: list[Change]) -> int:
    return sum(1 for change in changes if change.changes_something)
