"""Commands about the site file: `init`, `validate`, `stages`."""

from __future__ import annotations

from pathlib import Path

import typer

from cubeinstall.cli.options import (
    OPTIONS,
    load_context,
)
from cubeinstall.core.errors import ConfigError


def stages() -> None:
    """List every stage in install order: where it runs, and whether this site enables it."""
    from cubeinstall.site.stages import STAGES

    site = load_context().site if OPTIONS.config.exists() else None
    rows = []
    for index, stage in enumerate(STAGES, 1):
        if site is None:
            enabled = "default on" if stage.default_enabled else "default off"
        else:
            enabled = "yes" if stage.enabled(site) else "no"
        rows.append((index, stage.name, stage.scope.value, enabled, stage.summary))
        OPTIONS.out.event("stage", order=index, name=stage.name, layer=stage.layer.value,
                          runs_on=stage.scope.value, enabled=enabled, summary=stage.summary)
    OPTIONS.out.table("stages", ("#", "stage", "runs on", "enabled", "summary"), rows)


def init(
    path: Path = typer.Argument(Path("site.yaml"), help="where to write the example site"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Write a commented example site.yaml to start from."""
    from importlib.resources import files

    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; nothing was written", hint="pass --force to overwrite it")
    text = files("cubeinstall").joinpath("data/site.example.yaml").read_text(encoding="utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}",
                          hint="pick a path in a directory you can write to") from None
    OPTIONS.out.event("written", path=str(path), message=f"wrote {path}: edit it, then run `cubeinstall validate -c {path}`")


def validate() -> None:
    """Check the site file: every field, reference and cross-field rule."""
    from cubeinstall.site.stages import STAGES

    site = load_context().site
    enabled = [stage.name for stage in STAGES if stage.enabled(site)]
    OPTIONS.out.event(
        "valid", site=site.site, nodes=len(site.nodes), stages=enabled,
        message=f"{OPTIONS.config}: site {site.site} is valid — {len(site.nodes)} nodes, "
                f"{len(enabled)} of {len(STAGES)} stages enabled",
    )


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(validate)
    app.command()(stages)
