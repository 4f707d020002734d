"""The layer map of docs/architecture.md, enforced with import-linter."""

from __future__ import annotations

import shutil
import subprocess

from tests.helpers import REPO


def test_layers_and_pure_modules_hold():
    """cli -> run -> stages -> engines -> render -> site -> core, and no network library
    reaches the pure modules, directly or through another module."""
    command = shutil.which("lint-imports")
    assert command, "import-linter is a test dependency: pip install -e '.[test]'"
    result = subprocess.run([command], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_the_contract_fails_on_an_upward_import(tmp_path):
    """The check can fail: a copy of the package whose core imports a stage breaks it."""
    command = shutil.which("lint-imports")
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    (copy / "src/cubeinstall/core/upward.py").write_text("from cubeinstall.stages import load\n")
    result = subprocess.run([command], cwd=copy, capture_output=True, text=True,
                            env={"PYTHONPATH": str(copy / "src"), "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "cubeinstall.core.upward -> cubeinstall.stages" in result.stdout, result.stdout
