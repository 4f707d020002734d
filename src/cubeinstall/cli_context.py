"""Global CLI options and the objects every command builds from them.

Kept apart from cli.py so that sub-apps (``cubeinstall images ...``) build the
same Output and RunContext without importing the main app.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cubeinstall.output import Output
from cubeinstall.stages.base import RunContext, RunOptions

DEFAULT_CONFIG = Path("site.yaml")


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
# and by the error handler in cli.main.
OPTIONS = GlobalOptions()


def load_context(**run_options) -> RunContext:
    """Load and validate the site, and build the run context for a command."""
    from cubeinstall.site.loader import load_site

    site = load_site(OPTIONS.config)
    options = RunOptions(
        assume_yes=OPTIONS.yes,
        kubeconfig=OPTIONS.kubeconfig,
        context=OPTIONS.context,
        **run_options,
    )
    return RunContext(site=site, out=OPTIONS.out, options=options, config_path=OPTIONS.config)
