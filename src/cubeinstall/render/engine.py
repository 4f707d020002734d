"""Rendering: one pure function from (template, values) to Kubernetes objects.

Templates live in ``cubeinstall/templates/<stage>/*.yaml.j2``. Undefined
variables are errors (StrictUndefined), values are emitted through the
``yaml`` filter so that a password with a quote or a colon can never break
the document, and the output is parsed back into objects at once, so a
template bug surfaces here, named, not as a server error later.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jinja2

from cubeinstall.core.errors import CubeError
from cubeinstall.core.yamlio import load_documents


def _to_yaml_scalar(value: Any) -> str:
    # JSON is valid YAML and quotes everything that needs it.
    if hasattr(value, "reveal"):
        raise TypeError("secrets are placed only through Secret objects built in Python")
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cubeinstall", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["yaml"] = _to_yaml_scalar
    return env


def render_template(name: str, **values: Any) -> list[dict]:
    """Render ``templates/<name>`` with ``values`` and parse the result."""
    try:
        text = environment().get_template(name).render(**values)
    except jinja2.UndefinedError as exc:
        raise CubeError(f"template {name}: {exc.message}",
                        hint="this is a bug in cubeinstall's templates; please report it") from None
    try:
        return load_documents(text)
    except Exception as exc:  # yaml.YAMLError
        raise CubeError(f"template {name} produced invalid YAML: {exc}",
                        hint="this is a bug in cubeinstall's templates; please report it") from None


def render_stage(stage: str, **values: Any) -> list[dict]:
    """Every template of one stage, in file-name order."""
    names = sorted(
        name for name in environment().list_templates(extensions=["j2"])
        if name.startswith(f"{stage}/")
    )
    objects: list[dict] = []
    for name in names:
        objects.extend(render_template(name, **values))
    return objects
