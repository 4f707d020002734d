"""Small helpers shared by tests: run the CLI in-process, build site files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_SITE = REPO / "examples" / "site.yaml"
SHARED = REPO.parent / "shared"
# cube-studio's own install tree at the pinned version (what start.sh applies)
CUBE_INSTALL = SHARED / "upstream" / "cube-studio" / "v2026.03.01" / "install" / "kubernetes"


def run_cli(args: list[str], capsys, *, yes: bool = True) -> tuple[int, str, str]:
    """Run `cubeinstall ARGS` in this process; return (exit code, stdout, stderr).

    ``yes``: pass --yes, as a script must (`all`, `stage` and `uninstall` ask first on a
    terminal and refuse without one); the confirmation itself is tested with run_process."""
    from cubeinstall.cli import main

    old_argv = sys.argv
    sys.argv = ["cubeinstall", *(["--yes"] if yes else []), *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old_argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_process(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 60,
                stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m cubeinstall ARGS` in a child process, as a user does (this checkout's
    sources first on its path); stdin is empty (not a terminal) unless given."""
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "src"), *filter(None, [child_env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "cubeinstall", *args], env=child_env,
                          input=stdin or "", capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


def json_events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def example_site_data() -> dict:
    return yaml.safe_load(EXAMPLE_SITE.read_text())


def other_cluster(name: str, address: str = "10.0.1.11") -> dict:
    """A cluster after the first, for the example site: its own gateway domain and address."""
    return {"name": name, "kubeconfig": "kubeconfigs/main.demo.yaml",
            "domain": f"{name}.cube.example.com",
            "gateway": {"expose": "externalIPs", "addresses": [address]}}


def write_site(directory: Path, data: dict, name: str = "site.yaml") -> Path:
    """Write a site file next to copies of the example's demo secrets and kubeconfig."""
    for sub in ("secrets", "kubeconfigs"):
        target = directory / sub
        target.mkdir(exist_ok=True)
        for source in (EXAMPLE_SITE.parent / sub).iterdir():
            (target / source.name).write_bytes(source.read_bytes())
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


GOLDEN = REPO / "tests" / "golden"


def assert_golden(name: str, objects: list[dict]) -> None:
    """Objects equal tests/golden/<name>.yaml; CUBEINSTALL_UPDATE_GOLDEN=1 rewrites it."""
    import os

    from cubeinstall.core.yamlio import dump_documents

    text = dump_documents(objects)
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("CUBEINSTALL_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with CUBEINSTALL_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{name} differs from {path}; review, then update the golden"
