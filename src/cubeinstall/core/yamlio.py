"""YAML reading and writing shared by the site loader and the renderer.

Two readers:
- ``load_documents`` parses manifests (ours and upstream). It accepts the YAML
  1.1 ``value`` tag that PyYAML's safe loader rejects: prometheus-operator's
  AlertmanagerConfig CRD has enum entries ``- =``.
- ``load_with_positions`` parses the site file and remembers where each value
  stood, so every configuration error can name file:line:column.

One writer, ``dump_documents``, deterministic (sorted keys, no aliases), so the
same objects always give byte-identical text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import yaml

try:  # the C loader is several times faster on 1 MB upstream CRDs
    _BaseSafeLoader = yaml.CSafeLoader
    _BaseSafeDumper = yaml.CSafeDumper
except AttributeError:  # pragma: no cover - libyaml missing
    _BaseSafeLoader = yaml.SafeLoader
    _BaseSafeDumper = yaml.SafeDumper


class ManifestLoader(_BaseSafeLoader):
    """Safe loader that also reads the YAML 1.1 ``=`` (value) scalar as a string."""


ManifestLoader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_scalar)


def load_documents(text: str) -> list[dict]:
    """Every non-empty document of a multi-document YAML text."""
    return [doc for doc in yaml.load_all(text, Loader=ManifestLoader) if doc]


class _NoAliasDumper(_BaseSafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Multi-line strings (config files inside ConfigMaps) read best as blocks.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_NoAliasDumper.add_representer(str, _str_presenter)


def dump_documents(objects: Iterable[dict]) -> str:
    parts = [
        yaml.dump(obj, Dumper=_NoAliasDumper, sort_keys=True, default_flow_style=False, width=120)
        for obj in objects
    ]
    return "---\n".join(parts)


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


Path = tuple[Any, ...]


@dataclass(frozen=True)
class DuplicateKey:
    path: Path  # of the repeated key
    position: Position  # of its second (later) occurrence: that value is the one kept
    first: Position


def load_with_positions(text: str, duplicates: list[DuplicateKey] | None = None
                        ) -> tuple[Any, dict[Path, Position]]:
    """Parse one YAML document; return the data and where each path starts.

    Keys of mappings map to the position of the key itself (that is where a
    user looks for an unknown or misspelt key); list items to their value.
    A key repeated in one mapping (YAML keeps the last silently) is appended to
    ``duplicates`` when given.
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    positions: dict[Path, Position] = {}
    if root is None:
        return None, positions
    constructor = yaml.SafeLoader("")

    def build(node: yaml.Node, path: Path) -> Any:
        positions.setdefault(path, Position(node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
                here = Position(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in result and duplicates is not None:
                    duplicates.append(DuplicateKey(path + (key,), here, positions[path + (key,)]))
                positions[path + (key,)] = here
                result[key] = build(value_node, path + (key,))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [build(item, path + (index,)) for index, item in enumerate(node.value)]
        return constructor.construct_object(node, deep=True)

    return build(root, ()), positions
