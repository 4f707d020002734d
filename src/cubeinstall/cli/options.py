"""Options every command shares, defined once, and the objects commands build from them.

Global options (--config, --kubeconfig, --context, --json, -v, --no-color, --yes)
are parsed by the main callback into ``OPTIONS``; like kubectl's, they may stand
before or after the subcommand (``hoist_global_options`` moves them in front).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import typer

from cubeinstall.core.context import RunContext, RunOptions
from cubeinstall.core.errors import ConfigError
from cubeinstall.core.output import Output

DEFAULT_CONFIG = Path("site.yaml")

# Global option -> whether it takes a value. The main callback declares each of them.
GLOBAL_OPTIONS: dict[str, bool] = {
    "--config": True, "-c": True, "--kubeconfig": True, "--context": True,
    "--json": False, "--verbose": False, "-v": False, "--no-color": False,
    "--yes": False, "-y": False,
}


@dataclass
class GlobalOptions:
    config: Path = DEFAULT_CONFIG
    kubeconfig: Path | None = None
    context: str | None = None
    json: bool = False
    verbose: bool = False
    color: bool = True
    yes: bool = False
    out: Output = field(default_factory=Output)

    def __post_init__(self) -> None:
        self.refresh_output()

    def refresh_output(self) -> None:
        color = self.color and "NO_COLOR" not in os.environ
        self.out = Output(json_mode=self.json, verbose=self.verbose, color=color)


# The one instance for this process: set by the main callback, read by commands
# and by the error handler in cli.app.main.
OPTIONS = GlobalOptions()


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """argv with every global option (and its value) moved before the subcommand, so that
    ``cubeinstall plan -c site.yaml --json`` means ``cubeinstall -c site.yaml --json plan``.
    Nothing after ``--`` moves."""
    hoisted: list[str] = []
    rest: list[str] = []
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg
        takes_value = GLOBAL_OPTIONS.get(name)
        if takes_value is None:
            rest.append(arg)
        elif takes_value and "=" not in arg and index + 1 < len(args):
            hoisted.extend(args[index:index + 2])
            index += 1
        else:
            hoisted.append(arg)
        index += 1
    return hoisted + rest


def load_context(**run_options) -> RunContext:
    """Load and validate the site, and build the run context for a command. The site
    carries the kubeconfig each cluster uses (--kubeconfig/--context, $KUBECONFIG, site.yaml),
    so every command, render and plan --offline included, reads the same one."""
    from cubeinstall.site.kubeconfigs import effective_site
    from cubeinstall.site.loader import load_site

    site, origins = effective_site(load_site(OPTIONS.config), OPTIONS.kubeconfig, OPTIONS.context)
    return RunContext(site=site, out=OPTIONS.out, options=RunOptions(**run_options),
                      kubeconfig_origins=origins)


def require_confirmation_possible(what: str) -> None:
    """Before any work: without --yes a change is confirmed on a terminal; with no terminal
    to ask, refuse now (exit 2), before preflight or plans, with nothing changed."""
    if not OPTIONS.yes and not sys.stdin.isatty():
        raise ConfigError(f"{what} changes the site and asks first, but there is no terminal "
                          "to ask; nothing was changed",
                          hint="review the changes with `cubeinstall plan`, then run again "
                               "with --yes")


def confirm(question: str, what: str) -> None:
    """--yes, or y on a terminal (default No); anything else stops with nothing changed."""
    if OPTIONS.yes:
        return
    require_confirmation_possible(what)
    if not typer.confirm(question, default=False, err=True):
        raise ConfigError(f"{what}: not confirmed; nothing was changed",
                          hint="run again and answer y, or pass --yes")


# --- options several commands take ------------------------------------------------

def _stage_list(values: list[str] | None) -> list[str] | None:
    """--only a,b means --only a --only b."""
    if values is None:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


OnlyOption = typer.Option(None, "--only", callback=_stage_list,
                          help="run only these stages (repeatable, or a,b)")
SkipOption = typer.Option(None, "--skip", callback=_stage_list,
                          help="skip these stages (repeatable, or a,b)")
FromOption = typer.Option(None, "--from", help="start at this stage")
IgnoreOption = typer.Option(None, "--ignore", help="preflight check ID to accept failing (repeatable)")
TrustOption = typer.Option(False, "--trust-new-hosts", help="accept and record SSH host keys not yet in known_hosts")
PruneOption = typer.Option(False, "--prune", help="delete owned objects no longer rendered")
ForceOption = typer.Option(False, "--force", help="re-run stages whose inputs are unchanged, and take over fields another field manager owns")
DryRunOption = typer.Option(False, "--dry-run", help="plan, change nothing")
DEFAULT_JOBS = 4  # the cluster stages wait mostly on the API server, not on our CPU
JobsOption = typer.Option(DEFAULT_JOBS, "--jobs", "-j", min=1, help="stages run at once, each once the stages it needs are done")
SerialOption = typer.Option(False, "--serial", help="one stage at a time in registry order, stopping at the first failure (same as --jobs 1; for debugging)")
ClusterOption = typer.Option(None, "--cluster", help="act on this cluster of the site only (its stages; no node or registry stage)")
