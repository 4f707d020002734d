"""The kubectl built for the tests, run against a kubeconfig: what a person would type."""

from __future__ import annotations

import os
import subprocess

from tests.cluster import build


def kubectl(kubeconfig, *args: str) -> str:
    """Run it; a non-zero exit fails the test with its output. Returns stdout."""
    binary = build.toolset().binary("kubectl")
    result = subprocess.run([str(binary), *args], env={**os.environ, "KUBECONFIG": str(kubeconfig)},
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout
