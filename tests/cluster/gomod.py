"""Point the wrapper module tests/cluster/k8s at another Kubernetes version.

``k8s.io/kubernetes`` cannot be depended on plainly: its go.mod requires
its ~30 staging modules (k8s.io/api, k8s.io/client-go, ...) at the fake
version v0.0.0 and resolves them with ``replace => ./staging/...``
directives, which Go ignores in a dependency.  A consumer must replace
every one of them with the published tag (v0.MINOR.PATCH for Kubernetes
v1.MINOR.PATCH).  The list changes between releases (1.36 added
cri-streaming and streaming), so it is derived here from the kubernetes
go.mod itself, never maintained by hand:

    python tests/cluster/build.py sync-gomod v1.36.4

then commit tests/cluster/k8s/go.mod and go.sum.  Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path


class GoModError(RuntimeError):
    """The kubernetes go.mod could not be fetched or the wrapper not updated."""


def _go(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, GOTOOLCHAIN="local")
    result = subprocess.run(["go", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise GoModError(f"go {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def staging_modules(kubernetes_gomod: dict) -> list[str]:
    """Module paths the kubernetes go.mod requires at v0.0.0 or replaces locally."""
    required = {
        r["Path"] for r in kubernetes_gomod.get("Require") or [] if r["Version"] == "v0.0.0"
    }
    replaced = {
        r["Old"]["Path"]
        for r in kubernetes_gomod.get("Replace") or []
        if r["New"]["Path"].startswith("./staging/")
    }
    return sorted(required | replaced)


def staging_version(kubernetes_version: str) -> str:
    match = re.fullmatch(r"v1\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?", kubernetes_version)
    if not match:
        raise GoModError(f"not a Kubernetes release version: {kubernetes_version!r}")
    minor, patch, pre = match.groups()
    return f"v0.{minor}.{patch}{pre or ''}"


def sync(kubernetes_version: str, module_dir: Path) -> list[str]:
    """Rewrite module_dir/go.mod for ``kubernetes_version`` and tidy it.

    Returns the staging modules now replaced.
    """
    info = json.loads(
        _go(["mod", "download", "-json", f"k8s.io/kubernetes@{kubernetes_version}"], module_dir)
    )
    upstream = json.loads(_go(["mod", "edit", "-json", info["GoMod"]], module_dir))
    modules = staging_modules(upstream)
    if not modules:
        raise GoModError(f"k8s.io/kubernetes@{kubernetes_version} go.mod lists no staging modules")
    wrapper = json.loads(_go(["mod", "edit", "-json"], module_dir))
    edits = [f"-dropreplace={r['Old']['Path']}" for r in wrapper.get("Replace") or []]
    edits += [f"-require=k8s.io/kubernetes@{kubernetes_version}", f"-go={upstream['Go']}"]
    _go(["mod", "edit", *edits], module_dir)
    _insert_replace_block(module_dir / "go.mod", modules, staging_version(kubernetes_version))
    _go(["mod", "tidy"], module_dir)
    return modules


def _insert_replace_block(gomod: Path, modules: list[str], tag: str) -> None:
    """One readable ``replace ( ... )`` block, placed before the tool block.

    (``go mod edit -replace`` would append one ``replace`` line per module.)
    """
    lines = "".join(f"\t{m} => {m} {tag}\n" for m in modules)
    block = f"replace (\n{lines})\n"
    text = gomod.read_text()
    anchor = text.find("\ntool ")
    if anchor == -1:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        text = text[: anchor + 1] + block + "\n" + text[anchor + 1 :]
    gomod.write_text(text)
