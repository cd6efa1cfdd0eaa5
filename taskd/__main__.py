"""``python -m taskd``."""

from taskd.cli.commands import main

main()
