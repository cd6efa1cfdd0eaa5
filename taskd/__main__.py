"""``python -m taskd``."""

from taskd.cli import main

main()
