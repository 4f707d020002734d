"""`cubeinstall bundle fetch|create|load`: pinned upstream files for online and air-gapped sites.

Registered by the main app with ``app.add_typer(bundle_cli.app, name="bundle")``. The
global options (--config, --json, -v, ...) are parsed by the main callback into
``cli.options.OPTIONS``, before or after the command's name. Errors are CubeErrors,
mapped to exit codes by ``cli.app.main``.

- ``fetch``: download what the site's enabled stages need into the cache (verified);
- ``create FILE``: pack cached files (and optionally a saved images directory) with a lock;
- ``load FILE``: fill the cache of a machine without network from such a bundle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cubeinstall.cli.options import OPTIONS, load_context

app = typer.Typer(help="Pinned upstream manifests: fetch into the cache, pack and load bundles.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None)

AllOption = typer.Option(False, "--all", help="every component of the catalog, not only the "
                                               "site's enabled stages (no site file needed)")


def _files(everything: bool):
    """(site or None, upstream files): the site's needs, or the whole catalog."""
    from cubeinstall.upstream import catalog

    site = load_context().site if (not everything or OPTIONS.config.exists()) else None
    if everything:
        return site, [item for name in catalog.components() for item in
                      catalog.resolve(site, name).files]
    return site, catalog.site_files(site)


@app.command()
def fetch(everything: bool = AllOption,
          attempts: int = typer.Option(3, "--attempts", min=1, max=10,
                                       help="tries per file on network errors")) -> None:
    """Download the pinned upstream files into the cache, verifying each sha256."""
    from cubeinstall.upstream.cache import Cache
    from cubeinstall.upstream.fetch import fetch_all

    _, files = _files(everything)
    cache = Cache()
    results = fetch_all(files, cache, OPTIONS.out, attempts=attempts)
    counts = {action: sum(1 for r in results if r.action == action)
              for action in ("downloaded", "resumed", "cached")}
    OPTIONS.out.event("bundle-fetched", cache=str(cache.root), **counts,
                      message=f"{len(results)} upstream files verified in {cache.root} "
                              f"({counts['downloaded']} downloaded, {counts['resumed']} resumed, "
                              f"{counts['cached']} already cached)")


@app.command()
def create(file: Path = typer.Argument(..., help="the bundle to write (.tar.gz)"),
           everything: bool = AllOption,
           images: Optional[Path] = typer.Option(
               None, "--images", help="also pack this directory made by `cubeinstall images save`"),
           ) -> None:
    """Pack the cached upstream files (run `bundle fetch` first) into FILE with a lock file."""
    from cubeinstall.run import bundle
    from cubeinstall.upstream.cache import Cache

    _, files = _files(everything)
    bundle.create(file, files, Cache(), OPTIONS.out, images=images)


@app.command()
def load(file: Path = typer.Argument(..., help="a bundle made by `cubeinstall bundle create`"),
         images_to: Optional[Path] = typer.Option(
             None, "--images-to", help="unpack the bundle's images into this directory "
                                       "(then run `cubeinstall images load DIR`)"),
         ) -> None:
    """Fill the local cache from FILE: afterwards installs need no network for upstream files."""
    from cubeinstall.run import bundle
    from cubeinstall.upstream import catalog
    from cubeinstall.upstream.cache import FETCH_HINT, Cache

    cache = Cache()
    bundle.load(file, cache, OPTIONS.out, images_to=images_to)
    if OPTIONS.config.exists():  # tell now, not at install time, what the site still lacks
        missing = cache.missing(catalog.site_files(load_context().site))
        for item in missing:
            OPTIONS.out.warn(f"the site needs {item.label}, which the bundle does not hold",
                             hint=FETCH_HINT)
