"""The command line: one module per command group, global options in options.py."""

from cubeinstall.cli.app import main

__all__ = ["main"]
