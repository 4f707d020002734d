"""`images list|mirror|verify|save|load` through the typer sub-app, mounted as the main app
will mount it (``app.add_typer(images.cli.app, name="images")``)."""

from __future__ import annotations

import io

import pytest
import typer
import yaml
from typer.testing import CliRunner

from cubeinstall.cli import images as images_cli
from cubeinstall.cli.options import OPTIONS
from cubeinstall.core.errors import CubeError
from cubeinstall.core.output import Output
from cubeinstall.images.inventory import build_inventory
from cubeinstall.site.loader import load_site
from cubeinstall.stages import images as images_stage
from cubeinstall.stages.images import site_inventory
from tests.helpers import EXAMPLE_SITE
from tests.servers.registry import site_data


@pytest.fixture
def run(monkeypatch):
    root = typer.Typer()

    @root.callback()
    def _main() -> None:  # the main app's callback sets OPTIONS the same way
        OPTIONS.out = Output(json_mode=True, stream=io.StringIO())

    root.add_typer(images_cli.app, name="images")

    def invoke(*args: str):
        result = CliRunner().invoke(root, ["images", *args])
        if result.exception and not isinstance(result.exception, (SystemExit, CubeError)):
            raise result.exception
        return result, OPTIONS.out.events

    return invoke


def test_list_json_has_every_image_once(run, images_upstream_cache):
    result, events = run("list", "--config", str(EXAMPLE_SITE))
    assert result.exit_code == 0, result.output
    listed = [e for e in events if e["event"] == "image"]
    expected = site_inventory(load_site(EXAMPLE_SITE))
    assert [e["source"] for e in listed] == [u.source for u in expected]
    assert all(e["target"].startswith("harbor.example.com/cube-studio/") for e in listed)


@pytest.mark.registry
def test_mirror_verify_save_load(run, source_registry, target_registry, tmp_path, monkeypatch):
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(site_data(target_registry)))
    site = load_site(config)
    uses = build_inventory({"test": list(source_registry.images)}, site.registry)
    monkeypatch.setattr(images_stage, "site_inventory", lambda s: uses)

    result, _ = run("verify", "--config", str(config))
    assert isinstance(result.exception, CubeError)
    assert f"{len(uses)} of {len(uses)} images are missing" in str(result.exception)

    result, events = run("mirror", "--config", str(config), "--parallel", "8")
    assert result.exception is None
    assert sum(1 for e in events if e["event"] == "image" and e["action"] == "copied") == len(uses)

    result, events = run("verify", "--config", str(config))
    assert result.exception is None
    assert any(e["event"] == "images-verified" for e in events)

    bundle = tmp_path / "bundle"
    result, _ = run("save", str(bundle), "--config", str(config))
    assert result.exception is None and (bundle / "index.json").exists()
    result, events = run("load", str(bundle), "--config", str(config))
    assert result.exception is None
    summary = next(e for e in events if e["event"] == "images-summary")
    assert (summary["copied"], summary["present"]) == (0, len(uses))
