"""`python -m wsss.data.prepare <dataset> [options]`: see each data set's `--help`."""
from __future__ import annotations

import argparse
import importlib
import sys

from wsss.data.prepare import DATASETS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wsss.data.prepare",
                                description="Prepare a data set's folder from its official archives.")
    sub = p.add_subparsers(dest="dataset", required=True, metavar="DATASET", help=", ".join(DATASETS))
    for name in DATASETS:
        module = importlib.import_module(f"wsss.data.prepare.{name}")
        module.configure(sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0]))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return importlib.import_module(f"wsss.data.prepare.{args.dataset}").main(args)


if __name__ == "__main__":
    sys.exit(main())
