"""Whole-file edits: a line in /etc/fstab, swap entries commented out, a JSON merge.

Each computes the wanted text from the current text (a pure function, so the
tables in tests/unit/test_remote_operations.py cover it), reports unchanged
when they are equal, and otherwise writes atomically with a backup, keeping
the file's mode and owner.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from cubeinstall.remote.errors import Refused
from cubeinstall.remote.facts import MISSING, FileText, PathInfo, PathState
from cubeinstall.remote.operations import (
    Facts,
    Operation,
    Outcome,
    atomic_write,
    unchanged,
    unified_diff,
)


class TextEdit(Operation):
    """A whole-file edit computed from the current text; the file keeps its mode and owner."""

    path: str
    summary: str = "edit"

    @property
    def target(self) -> str:
        return self.path

    def facts(self):
        return (PathInfo(self.path), FileText(self.path))

    def edit(self, old: str | None) -> str:
        raise NotImplementedError

    def shown(self, text: str) -> str:
        """The text as the diff shows it (JSON is normalised so the diff is about meaning)."""
        return text

    def decide(self, facts: Facts) -> Outcome:
        state: PathState = facts.get(PathInfo(self.path), MISSING)
        if state.kind not in ("missing", "file"):
            raise Refused(f"{self.path} exists but is {state.describe()}, not a file",
                          hint="move it away; it is not touched")
        old = facts[FileText(self.path)]
        new = self.edit(old)
        if old is not None and new == old:
            return unchanged(self.path, f"{self.summary}: already so")
        diff = unified_diff(self.shown(old or ""), self.shown(new), self.path)
        script = atomic_write(self.path, new.encode(), state.mode if old is not None else 0o644,
                              state.owner or "root", state.group or "root", backup=old is not None)
        return Outcome(self.path, "update" if old is not None else "create", self.summary,
                       diff, script)


@dataclass(frozen=True)
class EnsureLine(TextEdit):
    """``line`` present once; lines matching ``replaces`` (a regex: the same key, e.g.
    the fstab entry of the same mount point) are replaced by it, not kept beside it."""

    path: str
    line: str
    replaces: str | None = None
    summary: str = "line"

    def edit(self, old: str | None) -> str:
        pattern = re.compile(self.replaces) if self.replaces else None
        kept, placed = [], False
        for line in (old or "").splitlines():
            if line == self.line or (pattern is not None and pattern.search(line)):
                if not placed:
                    kept.append(self.line)
                    placed = True
                continue
            kept.append(line)
        if not placed:
            kept.append(self.line)
        return "\n".join(kept) + "\n"


@dataclass(frozen=True)
class CommentOut(TextEdit):
    """Every uncommented line matching ``matches`` gets a leading '#'."""

    path: str
    matches: str
    summary: str = "comment out lines"

    def edit(self, old: str | None) -> str:
        if old is None:
            return ""
        pattern = re.compile(self.matches)
        lines = [f"#{line}" if pattern.search(line) and not line.lstrip().startswith("#") else line
                 for line in old.splitlines(keepends=True)]
        return "".join(lines)

    def decide(self, facts: Facts) -> Outcome:
        if facts[FileText(self.path)] is None:
            return unchanged(self.path, f"{self.summary}: no such file")
        return super().decide(facts)


@dataclass(frozen=True)
class Union:
    """In a JSON patch: add these items to a list, keeping the items already there."""

    items: tuple


def merge_json(current: Any, patch: Any) -> Any:
    """``patch`` laid over ``current``: objects merge key by key, ``Union`` adds to lists,
    anything else replaces. Keys the patch does not name are kept as they are."""
    if isinstance(patch, dict):
        merged = dict(current) if isinstance(current, dict) else {}
        for key, value in patch.items():
            merged[key] = merge_json(merged.get(key), value)
        return merged
    if isinstance(patch, Union):
        merged = list(current) if isinstance(current, list) else []
        return merged + [item for item in patch.items if item not in merged]
    return patch


@dataclass(frozen=True)
class EnsureJsonMerge(TextEdit):
    """A JSON object file with ``patch`` merged in. An existing file that is not a JSON
    object is refused and left byte-identical: we never overwrite what we cannot read."""

    path: str
    patch: Any = None
    summary: str = "merge JSON"

    def _load(self, text: str) -> dict:
        if not text.strip():
            return {}
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise Refused(f"{self.path} is not valid JSON ({exc}); it was left unchanged",
                          hint="fix the file (or remove it), then run again") from None
        if not isinstance(value, dict):
            raise Refused(f"{self.path} holds JSON that is not an object; it was left unchanged",
                          hint="fix the file (or remove it), then run again")
        return value

    def edit(self, old: str | None) -> str:
        current = self._load(old or "")
        merged = merge_json(current, self.patch)
        if old is not None and merged == current:
            return old  # already holds everything: keep the bytes as they are
        return json.dumps(merged, indent=2) + "\n"

    def shown(self, text: str) -> str:
        return json.dumps(self._load(text), indent=2) + "\n" if text.strip() else ""
