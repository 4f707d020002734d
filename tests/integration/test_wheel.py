"""The wheel carries everything a render needs: top-level templates/ and manifests/ included."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from tests.helpers import EXAMPLE_SITE, REPO


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH would put a source tree before the venv's own site-packages
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                            env=env)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


def test_an_installed_wheel_renders_the_example_like_the_source_tree(tmp_path):
    # Built from a copy without build/: setuptools would reuse a stale build/lib of the
    # working tree (files since removed from src/ would land in the wheel).
    tree = tmp_path / "tree"
    shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", ".git", ".venv", "__pycache__", "*_cache", "rendered"))
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--wheel-dir", str(tmp_path / "dist"), str(tree)], cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("cubeinstall-*.whl")
    # Dependencies come from this interpreter's site-packages; cubeinstall itself from the wheel.
    venv.create(tmp_path / "venv", system_site_packages=True, with_pip=True)
    python = tmp_path / "venv/bin/python"
    run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        cwd=tmp_path)
    where = run([str(python), "-c", "import cubeinstall; print(cubeinstall.__file__)"], cwd=tmp_path)
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout

    run([str(tmp_path / "venv/bin/cubeinstall"), "render", "-c", str(EXAMPLE_SITE), "--out",
         str(tmp_path / "from-wheel")], cwd=tmp_path)
    run([sys.executable, "-m", "cubeinstall", "render", "-c", str(EXAMPLE_SITE), "--out",
         str(tmp_path / "from-source")], cwd=tmp_path)
    from_wheel = sorted(p.name for p in (tmp_path / "from-wheel").iterdir())
    assert from_wheel == sorted(p.name for p in (tmp_path / "from-source").iterdir())
    assert len(from_wheel) >= 15  # every object stage, upstream ones included (seeded cache)
    for name in from_wheel:
        assert (tmp_path / "from-wheel" / name).read_bytes() == \
               (tmp_path / "from-source" / name).read_bytes(), name
    example = run([str(tmp_path / "venv/bin/cubeinstall"), "init", str(tmp_path / "new.yaml")],
                  cwd=tmp_path)
    assert "wrote" in example.stdout and (tmp_path / "new.yaml").read_text().startswith("#")
