"""`images list|mirror|verify|save|load` through the typer sub-app, mounted as the main app
will mount it (``app.add_typer(images.cli.app, name="images")``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml

from cubeinstall.images.inventory import build_inventory
from cubeinstall.site.loader import load_site
from cubeinstall.stages import images as images_stage
from cubeinstall.stages.images import site_inventory
from tests.helpers import EXAMPLE_SITE, json_events, run_cli
from tests.servers.registry import site_data


@dataclass
class Result:
    exit_code: int
    output: str
    error: str | None  # the message of the CLI's error event


@pytest.fixture
def run(capsys):
    """`cubeinstall --json images ARGS` through the real entry point, in this process."""
    def invoke(*args: str):
        code, out, err = run_cli(["--json", "images", *args], capsys)
        events = json_events(out)
        errors = [event["message"] for event in events if event["event"] == "error"]
        return Result(code, out + err, errors[-1] if errors else None), events

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
    assert result.exit_code == 1
    assert f"{len(uses)} of {len(uses)} images are missing" in result.error

    result, events = run("mirror", "--config", str(config), "--parallel", "8")
    assert result.exit_code == 0, result.output
    assert sum(1 for e in events if e["event"] == "image" and e["action"] == "copied") == len(uses)

    result, events = run("verify", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert any(e["event"] == "images-verified" for e in events)

    bundle = tmp_path / "bundle"
    result, _ = run("save", str(bundle), "--config", str(config))
    assert result.exit_code == 0 and (bundle / "index.json").exists()
    result, events = run("load", str(bundle), "--config", str(config))
    assert result.exit_code == 0, result.output
    summary = next(e for e in events if e["event"] == "images-summary")
    assert (summary["copied"], summary["present"]) == (0, len(uses))
