"""Read site.yaml into a typed Site, or report every problem at once.

Each problem reads ``site.yaml:12:5: nodes[1].roles: <what is wrong>`` with a
"did you mean" for misspelt keys. Nothing is changed anywhere when loading fails.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, get_args

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from cubeinstall.core.errors import ConfigError
from cubeinstall.core.yamlio import DuplicateKey, Position, load_with_positions
from cubeinstall.site.checks import check_site
from cubeinstall.site.model import DNS_LABEL_PATTERN, NFS, CephFS, LocalStorage, Site, dotted


def load_site(path: str | Path) -> Site:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read site file {path}: {exc.strerror or exc}",
            hint="pass --config PATH, or write one with `cubeinstall init`",
        ) from None
    return parse_site(text, path)


def parse_site(text: str, path: Path) -> Site:
    duplicates: list[DuplicateKey] = []
    try:
        data, positions = load_with_positions(text, duplicates)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, path) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1:1: a site file is a mapping (site:, domain:, nodes:, ...)",
                          hint="start from `cubeinstall init`")

    problems = [_format(path, item.position, item.path,
                        f"given twice (first at line {item.first.line}); keep one")
                for item in duplicates]
    context = {"base_dir": str(path.parent.resolve())}
    try:
        site = Site.model_validate(data, context=context)
    except ValidationError as exc:
        errors = exc.errors()
        problems += [
            _describe(error, path, positions)
            for error in errors
            if not _is_consequence(error, errors)
        ]
        site = _valid_sections(data, context, {error["loc"][0] for error in errors if error["loc"]})
    problems += [
        _format(path, _position_of(loc, positions), loc, message)
        for loc, message in check_site(site)
    ]
    if problems:
        raise _config_error(path, problems)
    return site


def _yaml_error(exc: yaml.YAMLError, text: str, path: Path) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = getattr(exc, "problem", None) or str(exc)
    line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
    if "\t" in problem or "\t" in line[: mark.column + 1 if mark else 0]:
        return ConfigError(f"{where}: not valid YAML: a tab character; YAML indents with spaces",
                           hint="use spaces, not tabs, in the site file")
    return ConfigError(f"{where}: not valid YAML: {problem}",
                       hint="fix the syntax at that line (indentation, quotes, colons)")


def _valid_sections(data: dict, context: dict, failed: set) -> Site:
    """A Site of the top-level sections that validated on their own (the others left out),
    so that the cross-field rules still run: every problem is reported in one run. A rule
    that reads a section left out is not run (checks.reads declares what each reads)."""
    sections = {}
    for name, field in Site.model_fields.items():
        if name in failed or name not in data:
            continue
        try:
            sections[name] = TypeAdapter(Annotated[field.annotation, field]).validate_python(
                data[name], context=context)
        except ValidationError:
            continue
    site = Site.model_construct(**sections)
    for name in failed:  # absent, not defaulted: a rule must not judge the default
        site.__dict__.pop(name, None)
    return site


def _config_error(path: Path, problems: list[str]) -> ConfigError:
    count = len(problems)
    return ConfigError(
        f"{path}: {count} problem{'s' if count != 1 else ''} in the site file; nothing was changed",
        problems=problems,
        hint="fix them all, then run `cubeinstall validate` again",
    )


def _describe(error: dict, path: Path, positions: dict) -> str:
    raw_loc = tuple(error["loc"])
    loc = tuple(part for part in raw_loc if part not in _UNION_TAGS)
    kind = error["type"]
    if kind == "union_tag_invalid":  # point at the discriminating key itself
        loc += (error["ctx"]["discriminator"].strip("'"),)
    if kind == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}" + _suggestion(raw_loc)
    elif kind == "missing":
        message = "required but missing" + _MISSING_HINTS.get(loc[-1], "")
    elif kind in ("tuple_type", "list_type") and isinstance(error.get("input"), (str, int, float)):
        message = f"write a list: [{error['input']}]"
    elif kind == "string_pattern_mismatch":
        message = _PATTERN_MEANING.get(error["ctx"]["pattern"], f"must match {error['ctx']['pattern']}")
        if not _names_a_secret(loc):
            message += f" (got {error['input']!r})"
    else:
        message = error["msg"].removeprefix("Value error, ")
        if kind.startswith("secret") or _names_a_secret(loc):
            pass  # never echo what the user typed into a secret field
        elif "input" in error and _is_scalar(error["input"]) and repr(error["input"]) not in message:
            message += f" (got {error['input']!r})"
    return _format(path, _position_of(loc, positions), loc, message)


def _is_consequence(error: dict, errors: list[dict]) -> bool:
    """A list reported too short only because its items failed is noise."""
    if error["type"] != "too_short":
        return False
    loc = tuple(error["loc"])
    return any(tuple(other["loc"])[: len(loc)] == loc and other is not error for other in errors)


_MISSING_HINTS = {
    "roles": ": a node needs its kind and workloads, e.g. roles: [cpu, train, notebook, service]",
}

_PATTERN_MEANING = {
    DNS_LABEL_PATTERN: "must be a DNS label: lower-case letters, digits and '-', at most 63",
}


def _names_a_secret(loc: tuple) -> bool:
    return any(str(part) in ("password", "secret", "sudo_password") for part in loc)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def _format(path: Path, position: Position | None, loc: tuple, message: str) -> str:
    where = f"{path}:{position}" if position else str(path)
    field = dotted(loc) or "(top level)"
    return f"{where}: {field}: {message}"


def _position_of(loc: tuple, positions: dict) -> Position | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in positions:
            return positions[loc[:end]]
    return None


def _suggestion(raw_loc: tuple) -> str:
    model = _model_at(raw_loc[:-1])
    if model is None:
        return ""
    names = list(model.model_fields)
    close = difflib.get_close_matches(str(raw_loc[-1]), names, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known keys here: {', '.join(names)}"


# Discriminated unions put the tag into error locations: storage.cephfs.user.
_UNION_TAGS = {"cephfs": CephFS, "nfs": NFS, "local": LocalStorage}


def _model_at(raw_loc: tuple) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``raw_loc`` (a pydantic location)."""
    current: Any = Site
    for part in raw_loc:
        if part in _UNION_TAGS:
            current = _UNION_TAGS[part]
            continue
        if isinstance(part, int) or not _is_model(current):
            continue  # list index or dict key: the item's model comes from the annotation
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _innermost_model(field.annotation) or field.annotation
    return current if _is_model(current) else None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _innermost_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside Optional[M], tuple[M, ...] or dict[str, M]."""
    if _is_model(annotation):
        return annotation
    for arg in get_args(annotation):
        found = _innermost_model(arg)
        if found is not None:
            return found
    return None
