"""Set top-level assignments of a Python file, leaving every other byte as it was.

For cube-studio's config.py: the site decides a handful of module-level names
(``SERVICE_EXTERNAL_IP``, ``CLUSTERS``, image settings); everything else must stay
the pinned upstream text, comments and all. Each name is located with ``ast``
(module-level ``Assign``/``AnnAssign`` whose single target is that name) and only
the source range of its value is replaced by a Python literal. A name that is
missing, assigned more than once at top level, or assigned together with other
targets is refused: the file is not the one this code was written against.
"""

from __future__ import annotations

import ast
import warnings
from typing import Any, Mapping

from cubeinstall.core.errors import CubeError

_INDENT = "    "


def top_level_assignments(source: str, label: str) -> dict[str, list[ast.stmt]]:
    """Name -> the module-level statements assigning it (in file order)."""
    try:
        with warnings.catch_warnings():  # e.g. config.py's "\e" in SECRET_KEY: not ours to fix
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except SyntaxError as exc:
        raise CubeError(f"{label}: not valid Python: {exc}",
                        hint="the catalog pins this file; report it to cubeinstall") from None
    found: dict[str, list[ast.stmt]] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            targets = statement.targets
        elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)) and statement.value is not None:
            targets = [statement.target]
        else:
            continue
        for target in targets:
            for name in _bound_names(target):
                found.setdefault(name, []).append(statement)
    return found


def _bound_names(target: ast.expr) -> list[str]:
    """Names a target binds: ``A``, ``A, B = ...``, ``[A, *B] = ...`` (not ``A[0] = ...``)."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Starred):
        return _bound_names(target.value)
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _bound_names(element)]
    return []


def assigned_value(source: str, name: str, label: str) -> Any:
    """The literal value of the one top-level assignment of ``name``."""
    statement = _the_assignment(top_level_assignments(source, label), name, label)
    try:
        return ast.literal_eval(statement.value)
    except ValueError:
        raise CubeError(f"{label}: {name} is not a literal", hint=_REPORT) from None


def replace_assignments(source: str, values: Mapping[str, Any], label: str) -> str:
    """``source`` with the value of each named top-level assignment replaced by a literal."""
    assignments = top_level_assignments(source, label)
    data = source.encode("utf-8")  # ast columns are UTF-8 byte offsets
    line_starts = [0]
    for line in data.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    spans = []
    for name, value in values.items():
        node = _the_assignment(assignments, name, label).value
        start = line_starts[node.lineno - 1] + node.col_offset
        end = line_starts[node.end_lineno - 1] + node.end_col_offset
        spans.append((start, end, python_literal(value).encode("utf-8")))
    for start, end, text in sorted(spans, reverse=True):
        data = data[:start] + text + data[end:]
    return data.decode("utf-8")


def _the_assignment(assignments: dict[str, list[ast.stmt]], name: str, label: str):
    statements = assignments.get(name, [])
    if not statements:
        raise CubeError(f"{label}: no top-level assignment of {name}",
                        hint="this file is not the one cubeinstall was written against: "
                             "use the pinned version, or give your own file (cube.config_py)")
    if len(statements) > 1:
        lines = ", ".join(str(s.lineno) for s in statements)
        raise CubeError(f"{label}: {name} is assigned {len(statements)} times at top level "
                        f"(lines {lines}); cubeinstall sets exactly one",
                        hint="use the pinned version, or give your own file (cube.config_py)")
    statement = statements[0]
    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
    if (isinstance(statement, ast.AugAssign) or len(targets) != 1
            or not isinstance(targets[0], ast.Name)):
        raise CubeError(f"{label}: {name} (line {statement.lineno}) is not a plain "
                        f"`{name} = value` assignment", hint=_REPORT)
    return statement


_REPORT = "the catalog pins this file; report it to cubeinstall"


def python_literal(value: Any, level: int = 0) -> str:
    """Python source for a literal: str, int, float, bool, None, list, tuple, dict.

    Containers are written one item per line, so a long CLUSTERS or image list reads
    like the hand-written original; ``ast.literal_eval`` gives the value back.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    inner = _INDENT * (level + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{python_literal(k, level + 1)}: {python_literal(v, level + 1)},"
                 for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + _INDENT * level + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]" if isinstance(value, list) else "()"
        if all(not isinstance(item, (dict, list, tuple)) for item in value) and len(value) <= 2:
            body = ", ".join(python_literal(item, level) for item in value)
            return f"[{body}]" if isinstance(value, list) else f"({body},)"
        items = [f"{inner}{python_literal(item, level + 1)}," for item in value]
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")")
        return opening + "\n" + "\n".join(items) + "\n" + _INDENT * level + closing
    raise TypeError(f"not a Python literal: {value!r}")
