"""A run keeps every host's connection open: the open-files limit is raised up front,
or the run is refused before any host is touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def with_limits(soft: int, hard: int, hosts: int) -> subprocess.CompletedProcess:
    """ensure_descriptors(hosts) in a process of its own (a lowered hard limit is for good)."""
    code = (f"import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
            "from cubeinstall.core.errors import CubeError\n"
            "from cubeinstall.remote.pool import ensure_descriptors\n"
            f"try:\n    ensure_descriptors({hosts})\nexcept CubeError as exc:\n    print(exc)\n"
            "print(resource.getrlimit(resource.RLIMIT_NOFILE))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(SRC)})


def test_a_short_soft_limit_is_raised_to_what_the_hosts_need():
    assert with_limits(1024, 4096, hosts=500).stdout == "(2256, 4096)\n"


def test_a_soft_limit_that_suffices_is_left_alone():
    assert with_limits(1024, 4096, hosts=100).stdout == "(1024, 4096)\n"


def test_a_hard_limit_too_low_is_said_with_the_number_needed():
    out = with_limits(512, 1024, hosts=500).stdout
    assert "500 hosts need about 2256 open files" in out
    assert "may open at most 1024" in out and "ulimit -n 2256" in out
    assert out.endswith("(512, 1024)\n")
