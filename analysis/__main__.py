"""Entry point of `python -m analysis` (see analysis/cli.py for the commands)."""
from analysis.cli import main

main()
