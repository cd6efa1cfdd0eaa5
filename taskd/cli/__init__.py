"""The ``taskd`` command line: click commands, terminal display, the CLI's HTTP client."""

from taskd.cli import workflow  # noqa: F401 - registers `taskd workflow`
from taskd.cli.commands import main

__all__ = ["main"]
