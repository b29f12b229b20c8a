"""`python -m wsss.thesis <runs folder or pipeline folder>`: the thesis's rows beside the runs there, each
with the settings by which it departs from its recipe (wsss/thesis/report.py); writes thesis.md and .json."""
from __future__ import annotations

import argparse
import logging
import sys

from wsss.thesis.report import report_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsss.thesis", description=__doc__.split(";")[0])
    parser.add_argument("folder", help="a runs folder (every run under it) or a pipeline folder (its steps)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(report_folder(args.folder), end="")
    except (FileNotFoundError, ValueError) as e:
        print(f"python -m wsss.thesis: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
