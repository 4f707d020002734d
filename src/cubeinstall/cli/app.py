"""The command line's root: global options, the command groups, and the one error map.

Heavy libraries (kubernetes, paramiko, pymysql) are imported by the engines
inside the commands that need them, never here: `cubeinstall --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from cubeinstall import __version__
from cubeinstall.cli import adopt, install, maintain, site
from cubeinstall.cli.options import DEFAULT_CONFIG, OPTIONS, hoist_global_options
from cubeinstall.core.errors import ConfigError, CubeError, ExitCode

app = typer.Typer(
    name="cubeinstall",
    help="Install the cube-studio ML platform on Kubernetes from one typed site.yaml.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion [bash|zsh|fish|powershell]
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback(invoke_without_command=True)
def _global(
    typer_context: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="site file (default: ./site.yaml)"),
    kubeconfig: Optional[Path] = typer.Option(None, help="kubeconfig of the platform cluster (overrides site.yaml)"),
    context: Optional[str] = typer.Option(None, help="kubeconfig context of the platform cluster"),
    json_output: bool = typer.Option(False, "--json", help="machine-readable events, one JSON object a line"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logs and unchanged objects"),
    no_color: bool = typer.Option(False, "--no-color", help="plain text output"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask before changing or deleting"),
    version: bool = typer.Option(False, "--version", help="print the version and exit", is_eager=True),
) -> None:
    """Global options may also follow the subcommand: `cubeinstall plan -c site.yaml`."""
    if version:
        typer.echo(f"cubeinstall {__version__}")
        raise typer.Exit()
    if typer_context.invoked_subcommand is None:
        typer.echo(typer_context.get_help())
        raise typer.Exit(ExitCode.CONFIG)
    OPTIONS.config = config or DEFAULT_CONFIG
    OPTIONS.kubeconfig, OPTIONS.context = kubeconfig, context
    OPTIONS.json, OPTIONS.verbose, OPTIONS.color, OPTIONS.yes = json_output, verbose, not no_color, yes
    OPTIONS.refresh_output()


def _register() -> None:
    from cubeinstall.cli.bundle import app as bundle_app
    from cubeinstall.cli.images import app as images_app

    site.register(app)
    install.register(app)
    maintain.register(app)
    adopt.register(app)
    app.add_typer(images_app, name="images", help="Image inventory, mirror, offline save/load, verify.")
    app.add_typer(bundle_app, name="bundle", help="Pinned upstream files: fetch, and offline bundles (create, load).")


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: one place maps every error to its exit code."""
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="cubeinstall", standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        code = ExitCode.INTERRUPTED
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.TyperException as exc:  # usage errors: unknown command, bad flag
        exc.show()
        sys.exit(ExitCode.CONFIG)
    except CubeError as exc:
        fields = {"hint": exc.hint, "exit_code": exc.exit_code}
        if isinstance(exc, ConfigError):
            fields["problems"] = exc.problems
        OPTIONS.out.error(str(exc), **fields)
        sys.exit(exc.exit_code)
    if code == ExitCode.INTERRUPTED:  # typer also turns Ctrl-C into exit code 130
        OPTIONS.out.error("interrupted; re-run the same command to continue")
    sys.exit(code or 0)
