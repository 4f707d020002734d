"""Whole-file edits: a line in /etc/fstab, swap entries commented out, a JSON merge,
values set in a TOML file.

Each computes the wanted text from the current text (a pure function, so the
tables in tests/unit/test_remote_operations.py cover it), reports unchanged
when they are equal, and otherwise writes atomically with a backup, keeping
the file's mode and owner.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with tomli (a dependency there)
    import tomli as tomllib

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


# -- TOML ---------------------------------------------------------------------------------

TomlKey = tuple[str, ...]  # the table's key parts, then the key: ("plugins", "cri", "registry", "config_path")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_HEADER = re.compile(r"^\s*\[[^\[]")  # a table header, not an array of tables ("[[")


def load_toml(path: str, text: str) -> dict:
    """A TOML document; one that does not parse is refused (and so left untouched)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Refused(f"{path} is not valid TOML ({exc}); it was left unchanged",
                      hint="fix the file (or remove it), then run again") from None


def toml_value(document: dict, key: TomlKey) -> Any:
    """The value at ``key`` (None when any part of it is missing)."""
    value: Any = document
    for part in key:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _toml_key(part: str) -> str:
    return part if _BARE_KEY.fullmatch(part) else json.dumps(part)


def _toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_literal(item) for item in value) + "]"
    return json.dumps(value)  # a JSON string is a TOML basic string


def _header_parts(line: str) -> TomlKey | None:
    """The key parts of a table header line (``[a."b.c"]  # x`` -> ("a", "b.c")), else None."""
    if not _HEADER.match(line):
        return None
    try:
        table = tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return None  # e.g. a line of a multi-line array
    parts: list[str] = []
    while isinstance(table, dict) and len(table) == 1:
        (part, table), = table.items()
        parts.append(part)
    return tuple(parts) if parts and table == {} else None


def _set_line(text: str, table: TomlKey, key: str, value: Any) -> str:
    """``key = value`` in ``table``: its line replaced, else added under the table's header,
    else the table appended. Every other line stays as it is."""
    lines = text.splitlines(keepends=True)
    headers = [(index, _header_parts(line)) for index, line in enumerate(lines)]
    headers = [(index, parts) for index, parts in headers if parts is not None]
    assignment = f"{_toml_key(key)} = {_toml_literal(value)}\n"
    if table:
        starts = [index for index, parts in headers if parts == table]
        if not starts:
            ending = "" if not text or text.endswith("\n") else "\n"
            return f"{text}{ending}\n[{_dotted(table)}]\n  {assignment}"
        start = starts[0] + 1
        indent = re.match(r"\s*", lines[starts[0]]).group() + "  "
    else:
        start, indent = 0, ""
    end = next((index for index, _ in headers if index >= start), len(lines))
    own = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*=")
    for index in range(start, end):
        if own.match(lines[index]):
            lines[index] = re.match(r"\s*", lines[index]).group() + assignment
            return "".join(lines)
    while end > start and not lines[end - 1].strip():  # after the table's last line
        end -= 1
    if end and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    lines.insert(end, indent + assignment)
    return "".join(lines)


def _dotted(key: TomlKey) -> str:
    return ".".join(_toml_key(part) for part in key)


@dataclass(frozen=True)
class EnsureTomlValues(TextEdit):
    """A TOML file with ``values`` set (strings, booleans, lists of them), every other key,
    table and comment kept as written. A missing (or blank) file starts as ``start``. An existing file that is not
    valid TOML, or whose tables are written in a form this edit cannot change in place
    (inline tables, dotted keys), is refused and left byte-identical."""

    path: str
    values: tuple[tuple[TomlKey, Any], ...] = ()
    start: str = ""
    summary: str = "set TOML values"

    def edit(self, old: str | None) -> str:
        text = old if old and old.strip() else self.start
        document = load_toml(self.path, text)
        for key, value in self.values:
            if toml_value(document, key) != _plain(value):
                text = _set_line(text, key[:-1], key[-1], value)
        try:
            result = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            result = {}
        wrong = [key for key, value in self.values if toml_value(result, key) != _plain(value)]
        if wrong:
            raise Refused(f"cannot set {', '.join(_dotted(k) for k in wrong)} in {self.path}: "
                          "its table is written in a form this edit does not change (an inline "
                          "table or dotted keys); it was left unchanged",
                          hint="set it by hand, then run again")
        return text


def _plain(value: Any) -> Any:
    """A value as tomllib reads it back (tuples are lists)."""
    return [_plain(item) for item in value] if isinstance(value, (list, tuple)) else value
