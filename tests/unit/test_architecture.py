"""The layer contract of docs/architecture.md, enforced with import-linter."""

from __future__ import annotations

import shutil
import subprocess

from tests.helpers import REPO


def test_pure_layers_never_import_network_libraries():
    command = shutil.which("lint-imports")
    assert command, "import-linter is a test dependency: pip install -e '.[test]'"
    result = subprocess.run([command], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout
