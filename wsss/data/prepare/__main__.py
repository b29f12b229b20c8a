"""`python -m wsss.data.prepare <dataset> [options]`: see each data set's `--help`."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from wsss.data.prepare import DATASETS


def available() -> list[str]:
    """The data sets of DATASETS whose module is installed."""
    return [n for n in DATASETS if importlib.util.find_spec(f"wsss.data.prepare.{n}") is not None]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wsss.data.prepare",
                                description="Prepare a data set's folder from its official archives.")
    sub = p.add_subparsers(dest="dataset", required=True, metavar="DATASET", help=", ".join(available()))
    for name in available():
        module = importlib.import_module(f"wsss.data.prepare.{name}")
        module.configure(sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0]))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return importlib.import_module(f"wsss.data.prepare.{args.dataset}").main(args)


if __name__ == "__main__":
    sys.exit(main())
