"""Entry points of `python -m analysis` and of the installed `lrsched-analysis` / `lrsched-advise` commands
(pyproject.toml); the commands themselves are in analysis/cli.py."""

import sys

from analysis.cli import main


def console(argv=None) -> int:
    """`lrsched-analysis ...` = `python -m analysis ...`. An exit status: main returns the computed table
    (for scripts and tests), which sys.exit would print to stderr as an error."""
    main(argv)
    return 0


def console_advise(argv=None) -> int:
    """`lrsched-advise transfer ...` = `python -m analysis advise transfer ...`."""
    return console(["advise", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(console())
