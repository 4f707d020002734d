"""`cubeinstall images list|mirror|save|load|verify`: a typer sub-app over the images engine.

Registered by the main app with ``app.add_typer(images.cli.app, name="images")``. The
global options (--config, --json, -v, ...) are parsed by the main callback into
``cli.options.OPTIONS``, before or after the command's name. Errors are CubeErrors,
mapped to exit codes by ``cli.app.main``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cubeinstall.cli.options import load_context
from cubeinstall.core.errors import CubeError

app = typer.Typer(help="Images the site needs: list, mirror, save, load, verify.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None)

ParallelOption = typer.Option(4, "--parallel", "-p", min=1, max=64, help="copies at a time")
AttemptsOption = typer.Option(3, "--attempts", min=1, max=10,
                              help="tries per image on transient errors")
InsecureSourceOption = typer.Option(None, "--insecure-source",
                                    help="source registry host[:port] without TLS verification "
                                         "(repeatable; loopback hosts always are)")


def _settings(parallel: int, attempts: int, insecure: Optional[List[str]]):
    from cubeinstall.images.mirror import MirrorSettings

    return MirrorSettings(parallel=parallel, attempts=attempts,
                          insecure_sources=frozenset(insecure or ()))


@app.command("list")
def list_images() -> None:
    """Every image of the enabled stages and of the platform's run time, with its private name;
    the stages whose images need `cubeinstall bundle fetch` first are named."""
    from cubeinstall.stages.images import known_inventory
    from cubeinstall.upstream.cache import FETCH_HINT

    ctx = load_context()
    uses, unknown = known_inventory(ctx.site)
    for use in uses:
        ctx.out.event("image", **use.as_dict())
    ctx.out.table(f"{len(uses)} images", ("image", "private name", "used by"),
                  [(u.source, u.target or "-", ", ".join(u.used_by)) for u in uses])
    if unknown:
        ctx.out.warn(f"not listed: the images of stage(s) {', '.join(unknown)}: their upstream "
                     f"files are not in the local cache; to list them, {FETCH_HINT}")


@app.command()
def mirror(parallel: int = ParallelOption,
           attempts: int = AttemptsOption,
           insecure_source: Optional[List[str]] = InsecureSourceOption) -> None:
    """Copy every missing image into the site registry (registry to registry, with skopeo)."""
    from cubeinstall.stages import images as stage

    ctx = load_context()
    stage.mirror_images(ctx, _settings(parallel, attempts, insecure_source))


@app.command()
def save(directory: Path = typer.Argument(..., help="directory to save into (created)"),
         parallel: int = ParallelOption,
         attempts: int = AttemptsOption,
         insecure_source: Optional[List[str]] = InsecureSourceOption) -> None:
    """Save every image the site needs into DIRECTORY, for an air-gapped site."""
    from cubeinstall.images.offline import save as save_images
    from cubeinstall.stages.images import site_inventory

    ctx = load_context()
    images = [use.source for use in site_inventory(ctx.site) if not use.in_site_registry]
    report = save_images(images, directory, ctx.out, _settings(parallel, attempts,
                                                                insecure_source))
    _fail_on(report, "saved")


@app.command()
def load(directory: Path = typer.Argument(..., help="a directory written by `images save`"),
         parallel: int = ParallelOption,
         attempts: int = AttemptsOption) -> None:
    """Verify the checksums of DIRECTORY, then push its images into the site registry."""
    from cubeinstall.images.offline import load as load_images

    ctx = load_context()
    _fail_on(load_images(directory, ctx.site, ctx.out, _settings(parallel, attempts, None)),
             "loaded")


@app.command()
def verify() -> None:
    """Check that the site registry serves every image the site needs (one manifest HEAD each)."""
    from cubeinstall.images.status import missing_in_registry
    from cubeinstall.stages.images import site_inventory

    ctx = load_context()
    uses = site_inventory(ctx.site)
    missing = missing_in_registry(ctx.site, uses)
    wanted = sum(1 for use in uses if use.needs_copy)
    if missing:
        ctx.out.table(f"{len(missing)} of {wanted} images missing",
                      ("private name", "image", "used by"),
                      [(u.target, u.source, ", ".join(u.used_by)) for u in missing])
        raise CubeError(f"{len(missing)} of {wanted} images are missing from the site registry",
                        hint="run `cubeinstall images mirror` (or `images load DIR` offline)")
    ctx.out.event("images-verified", count=wanted,
                  message=f"all {wanted} images are in the site registry")


def _fail_on(report, verb: str) -> None:
    from cubeinstall.images.mirror import failure

    if report.failed:
        raise CubeError(f"{len(report.failed)} of {len(report.results)} images were not "
                        f"{verb}: {failure(report)}",
                        hint="fix the cause and run again: finished images are kept")
