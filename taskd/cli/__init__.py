"""The ``taskd`` command line: click commands, terminal display, the CLI's HTTP client."""

from taskd.cli.commands import main

__all__ = ["main"]
