"""The thesis's published values (Tables 2-11 of the P-NOC / MinMax-CAM thesis), so that a report can print
the paper's number beside ours when the run is the matching recipe on the matching data set.

`published.csv` holds one value per line: table, row, column, value (percent, as printed in the thesis).
Row and column names follow the thesis's (e.g. table 7, row "RS269 P-NOC+LS", column "TTA"; table 11,
row "P-NOC", column "bicycle"). Table 11 was re-read by hand where the text extraction merged cells.
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

PUBLISHED = Path(__file__).with_name("published.csv")

# Table 7 rows (CAM mIoU on VOC12 train, with TTA) of the runs our recipes make: (stage.name, run_name).
CAM_ROWS = {
    ("classifier", "default"): "RS269 RA",
    ("puzzle", "rs269_p"): "RS269 P",
    ("puzzle", "rs269_pf"): "RS269 Pf",
    ("poc", "rs269_poc"): "RS269 P-OC",
    ("poc", "rs269_poc_ls"): "RS269 P-OC+LS",
    ("pnoc", "rs269_pnoc_ls"): "RS269 P-NOC+LS",
    ("pnoc", "rs269_pnoc_ls_leak"): "RS269 P-NOC+LS",
}


@lru_cache(maxsize=1)
def published() -> dict[tuple[int, str, str], float]:
    with PUBLISHED.open(newline="") as f:
        return {(int(r["table"]), r["row"], r["column"]): float(r["value"]) for r in csv.DictReader(f)}


def value(table: int, row: str, column: str) -> float | None:
    """The published value (percent), or None when the thesis has no such cell."""
    return published().get((int(table), row, column))


def cam_counterpart(cfg: dict, split: str) -> float | None:
    """Table 7's TTA mIoU (percent) of the run described by the resolved config `cfg`, when it is one of the
    thesis's CAM runs: a voc12_rs269_* recipe (or the canonical classifier) with ResNeSt-269 on VOC12 train."""
    if split != "train" or cfg["dataset"].get("name") != "voc12" or cfg["backbone"].get("name") != "resnest269":
        return None
    row = CAM_ROWS.get((cfg["stage"].get("name"), cfg.get("run_name")))
    return value(7, row, "TTA") if row else None


def beside_cam_miou(cfg: dict, split: str, prefix: str, miou: float) -> dict:
    """`{prefix}/thesis_miou` and `{prefix}/thesis_diff` (ours − thesis, as fractions like `miou`), or {}."""
    thesis = cam_counterpart(cfg, split)
    if thesis is None:
        return {}
    return {f"{prefix}/thesis_miou": thesis / 100.0, f"{prefix}/thesis_diff": miou - thesis / 100.0}
