"""What cube-studio's own start.sh creates, read from the pinned install tree (test data).

A small interpreter of exactly the commands start.sh uses: ``cd``, ``sh
create_ns_secret.sh``, ``kubectl apply|create -f FILE``, ``kubectl apply -k DIR``
(kustomize: resources, namespace, configMapGenerator) and ``kubectl create configmap
NAME ... -n NS``. Deletes, waits, labels and the final patch create nothing. Objects
without a namespace land in ``default``, as kubectl puts them. The parity tests compare
this list with what cubeinstall renders.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from cubeinstall.core.yamlio import load_documents
from cubeinstall.upstream.kinds import cluster_scoped_kinds, group_kind
from tests.helpers import CUBE_INSTALL

INSTALL = CUBE_INSTALL


@dataclass(frozen=True)
class Created:
    kind: str
    namespace: str | None  # None: cluster-scoped
    name: str
    source: str  # the file (or command) that creates it, relative to the install tree
    obj: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    #: how start.sh creates it from its file (``apply`` or ``create``; "" otherwise)
    verb: str = field(default="", compare=False, hash=False, repr=False)

    @property
    def key(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


def start_sh_objects(root: Path = INSTALL) -> list[Created]:
    created: list[Created] = []
    cwd = root
    for command in _commands((root / "start.sh").read_text()):
        words = shlex.split(command)
        if words[0] == "cd":
            cwd = _normal(cwd / words[1])
        elif words[:2] == ["sh", "create_ns_secret.sh"]:
            created += _namespaces_and_secrets(root / "create_ns_secret.sh")
        elif words[0] == "kubectl" and words[1] in ("apply", "create") and "-f" in words:
            created += [replace(item, verb=words[1]) for item in
                        _from_file(_normal(cwd / words[words.index("-f") + 1]), root)]
        elif words[0] == "kubectl" and words[1] == "apply" and "-k" in words:
            created += _kustomize(_normal(cwd / words[words.index("-k") + 1]), root)
        elif words[:3] == ["kubectl", "create", "configmap"]:
            created.append(Created("ConfigMap", _namespace_flag(words), words[3], "start.sh"))
    return created


def _normal(path: Path) -> Path:
    """``..`` folded without following symlinks (the test data may be reached through one)."""
    return Path(os.path.normpath(path))


def _commands(script: str) -> list[str]:
    lines = [line.strip() for line in script.splitlines()]
    return [line for line in lines if line and not line.startswith("#")
            and re.match(r"(cd|sh|kubectl) ", line)]


def _namespace_flag(words: list[str]) -> str:
    for index, word in enumerate(words):
        if word in ("-n", "--namespace"):
            return words[index + 1]
        if word.startswith("--namespace="):
            return word.split("=", 1)[1]
    return "default"


def _namespaces_and_secrets(script: Path) -> list[Created]:
    [loop] = re.findall(r"for namespace in (.*)", script.read_text())
    names = [word.strip("'\"") for word in loop.split()]
    source = script.name
    return [item for name in names for item in (
        Created("Namespace", None, name, source), Created("Secret", name, "hubsecret", source))]


def _from_file(path: Path, root: Path, namespace: str | None = None) -> list[Created]:
    documents = [item for doc in load_documents(path.read_text())
                 for item in (doc.get("items") or [] if doc["kind"].endswith("List") else [doc])]
    scoped = cluster_scoped_kinds(documents)
    result = []
    for obj in documents:
        meta = obj.get("metadata") or {}
        if group_kind(obj) in scoped:
            where = None
        else:
            where = namespace or meta.get("namespace") or "default"
        result.append(Created(obj["kind"], where, meta["name"], str(path.relative_to(root)), obj))
    return result


def _kustomize(directory: Path, root: Path) -> list[Created]:
    file = next(directory / name for name in ("kustomization.yml", "kustomization.yaml")
                if (directory / name).is_file())
    spec = yaml.safe_load(file.read_text())
    namespace = spec.get("namespace")
    result: list[Created] = []
    for resource in spec.get("resources") or []:
        target = _normal(directory / resource)
        items = _kustomize(target, root) if target.is_dir() else _from_file(target, root)
        result += [_in_namespace(item, namespace) for item in items]
    for generator in spec.get("configMapGenerator") or []:
        result.append(Created("ConfigMap", namespace or "default", generator["name"],
                              str(file.relative_to(root))))
    return result


def _in_namespace(item: Created, namespace: str | None) -> Created:
    if namespace is None or item.namespace is None:
        return item
    return Created(item.kind, namespace, item.name, item.source, item.obj)
