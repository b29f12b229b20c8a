"""Print a Table-9-like table from the metrics.json of ccam (priors, P) and saliency (refined, R) runs.

    python -m wsss.saliency.table --split train \
        "C²AM|-|<ccam run>|<saliency run>" "C²AM-H|classifier|<ccam run>|<saliency run>" ...

Columns: fg/bg mIoU (best threshold), class-aware mIoU with ground-truth classes ("GT" rows of
Table 9) and, when the runs were evaluated with CAMs, class-aware mIoU with 1 − saliency as the
background of those CAMs; each for the priors (P, C²AM saliency) and the refined maps (R, PoolNet).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _load(run_dir: str) -> dict:
    p = Path(run_dir) / "metrics.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def _pct(metrics: dict, key: str) -> str:
    v = metrics.get(key)
    return f"{100 * v:5.1f}" if isinstance(v, (int, float)) else "    -"


def table(rows: list[str], split: str = "train", kind: str = "saliency") -> str:
    head = (f"{'Method':<10} {'Hints':<12} {'fg/bg P%':>8} {'fg/bg R%':>8} {'GT P%':>6} {'GT R%':>6} "
            f"{'CAM P%':>6} {'CAM R%':>6}")
    lines = [head, "-" * len(head)]
    for row in rows:
        parts = row.split("|")
        if len(parts) != 4:
            raise ValueError(f"row {row!r}: expected 'method|hints|ccam_run_dir|saliency_run_dir'")
        method, hints, prior_dir, refined_dir = parts
        p, r = _load(prior_dir), _load(refined_dir) if refined_dir else {}
        k = f"{kind}/{split}/"
        lines.append(f"{method:<10} {hints:<12} {_pct(p, k + 'fgbg_miou'):>8} {_pct(r, k + 'fgbg_miou'):>8} "
                     f"{_pct(p, k + 'class_miou'):>6} {_pct(r, k + 'class_miou'):>6} "
                     f"{_pct(p, k + 'cam_miou'):>6} {_pct(r, k + 'cam_miou'):>6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="+", help="method|hints|ccam_run_dir|saliency_run_dir")
    ap.add_argument("--split", default="train")
    args = ap.parse_args(argv)
    print(table(args.rows, args.split))


if __name__ == "__main__":
    main()
