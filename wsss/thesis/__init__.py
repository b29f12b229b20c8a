"""The thesis's published values (Tables 2-11 of the P-NOC / MinMax-CAM thesis). The report that puts them
beside what was run is wsss/thesis/report.py (`python -m wsss.thesis <folder>`, and a pipeline's last step);
which row a run reproduces is wsss/thesis/rows.py.

`published.csv` holds one value per line: table, row, column, value (percent, as printed in the thesis).
Row and column names follow the thesis's (e.g. table 7, row "RS269 P-NOC+LS", column "TTA"; table 11,
row "P-NOC", column "bicycle"). Table 11 was re-read by hand where the text extraction merged cells.
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

PUBLISHED = Path(__file__).with_name("published.csv")


@lru_cache(maxsize=1)
def published() -> dict[tuple[int, str, str], float]:
    with PUBLISHED.open(newline="") as f:
        return {(int(r["table"]), r["row"], r["column"]): float(r["value"]) for r in csv.DictReader(f)}


def value(table: int, row: str, column: str) -> float | None:
    """The published value (percent), or None when the thesis has no such cell."""
    return published().get((int(table), row, column))


# -- the XAI benchmark (Tables 3, 4, 6) and its classifiers (Table 5) -------------------------------------------
#: the thesis's data set names and the split its XAI tables explain (§B.1.2: "VOC07 validation set"; COCO17
#: val2017; P:UAS's held-out 30 %)
XAI_DATASETS = {"voc07": "VOC07", "voc12": "VOC12", "coco17": "COCO17", "planet": "P:UAS", "hpa": "HPA"}
XAI_SPLITS = {"voc07": "val", "voc12": "val", "coco17": "val2017", "planet": "val", "hpa": "val"}
XAI_ARCHITECTURES = {"efficientnet_b6": "Eb6", "resnet101": "RN101", "vgg16": "VGG16"}  # Table 3, VOC07 only
XAI_METHODS = {"cam": "CAM", "gradcampp": "Grad-CAM++", "scorecam": "Score-CAM", "minmax_cam": "MinMax-CAM",
               "d_minmax_cam": "D-MinMax-CAM"}
XAI_METRICS = {"ic": "%IC", "ad": "%AD", "ado": "%ADO", "ar": "%AR", "aro": "%ARO", "f1_neg": "F1-", "f1_pos": "F1+"}
#: Table 5's rows: the data set's split our classifier is validated on → (row, the F-score our validation logs)
CLASSIFIER_ROWS = {("voc07", "test"): ("F1 VOC07 Test", "f1"), ("voc12", "val"): ("F1 VOC12 Val", "f1"),
                   ("coco17", "val2017"): ("F1 COCO17 Val", "f1"), ("planet", "val"): ("F2 P:UAS Val", "f2")}


def kur_variant(kur: bool, alpha) -> str | None:
    """Table 5's and 6's variant of a classifier's `stage.kur` setting: `baseline`, or `KUR` for the thesis's
    regulariser (α = 1); None for KUR-α (α = `num_classes`, §B.1.4, or any other number)."""
    if not kur:
        return "baseline"
    return "KUR" if alpha == 1 else None


def xai_table(dataset: str, architecture: str, kur: bool, alpha) -> tuple[int, str] | None:
    """(table, the data set or architecture part of its row names) of the thesis's XAI table that explains a
    classifier of `dataset` and `architecture` trained with this KUR setting: Table 3, VOC07 across
    architectures; 4, RN101 across data sets; 6, the same with KUR. None: the thesis has no such table."""
    variant = kur_variant(kur, alpha)
    if dataset not in XAI_DATASETS or variant is None:
        return None
    if variant == "KUR":
        return (6, XAI_DATASETS[dataset]) if architecture == "resnet101" else None
    if architecture == "resnet101":
        return 4, XAI_DATASETS[dataset]
    if dataset == "voc07" and architecture in XAI_ARCHITECTURES:
        return 3, XAI_ARCHITECTURES[architecture]
    return None
