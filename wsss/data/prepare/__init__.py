"""Data preparation from the official downloads: `python -m wsss.data.prepare <dataset> ...`.

Each data set is one module of this package exposing

    configure(parser: argparse.ArgumentParser) -> None   # its command-line options
    main(args: argparse.Namespace) -> int                # prepare, print what was written, return an exit code

and listed in DATASETS. Preparation is resumable (a finished file is not redone) and every write is atomic.
"""
from __future__ import annotations

import importlib.util

# TEMPORARY on this branch: only the data sets whose module exists (voc12 and voc07 land separately)
DATASETS = tuple(name for name in ("voc12", "voc07", "coco14")
                 if importlib.util.find_spec(f"wsss.data.prepare.{name}") is not None)
