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
#: the thesis's data set names, the split its XAI tables explain (§B.1.2: "VOC07 validation set"; COCO17 val2017;
#: P:UAS's held-out 30 %) and the training splits that leave it unseen
XAI_DATASETS = {"voc07": "VOC07", "voc12": "VOC12", "coco17": "COCO17", "planet": "P:UAS", "hpa": "HPA"}
XAI_SPLITS = {"voc07": "val", "voc12": "val", "coco17": "val2017", "planet": "val", "hpa": "val"}
XAI_TRAIN_SPLITS = {"voc07": ("train",), "voc12": ("train", "train_aug"), "coco17": ("train2017",),
                    "planet": ("train",), "hpa": ("train",)}
XAI_ARCHITECTURES = {"efficientnet_b6": "Eb6", "resnet101": "RN101", "vgg16": "VGG16"}  # Table 3, VOC07 only
XAI_METHODS = {"cam": "CAM", "gradcampp": "Grad-CAM++", "scorecam": "Score-CAM", "minmax_cam": "MinMax-CAM",
               "d_minmax_cam": "D-MinMax-CAM"}
XAI_METRICS = {"ic": "%IC", "ad": "%AD", "ado": "%ADO", "ar": "%AR", "aro": "%ARO", "f1_neg": "F1-", "f1_pos": "F1+"}
#: Table 5's rows: the data set's split our classifier is validated on → (row, the F-score our validation logs)
CLASSIFIER_ROWS = {("voc07", "test"): ("F1 VOC07 Test", "f1"), ("voc12", "val"): ("F1 VOC12 Val", "f1"),
                   ("coco17", "val2017"): ("F1 COCO17 Val", "f1"), ("planet", "val"): ("F2 P:UAS Val", "f2")}


def xai_classifier(trained: dict, dataset: str) -> bool:
    """Whether `trained` (a classifier checkpoint's config) is an `xai_*` recipe's classifier of the thesis's
    benchmark (A.1.2): the biased sigmoid dense head at the backbone's native stride, on a training split that
    leaves the explained split unseen."""
    s, d = trained.get("stage") or {}, trained.get("dataset") or {}
    return (s.get("name") == "classifier" and bool((s.get("head") or {}).get("bias"))
            and (trained.get("backbone") or {}).get("output_stride") is None
            and d.get("name") == dataset and d.get("train_split") in XAI_TRAIN_SPLITS.get(dataset, ()))


def kur_variant(kur: bool, alpha: float) -> str | None:
    """Table 5's column: `baseline`, or `KUR` for the thesis's regulariser (α = 1); None for KUR-α."""
    if not kur:
        return "baseline"
    return "KUR" if alpha == 1.0 else None


def xai_source(cfg: dict, trained: dict, kur: bool, alpha: float, split: str) -> tuple[int, str] | None:
    """(table, the data set or architecture part of its row names) of the thesis's XAI table an `xai` run
    reproduces: the labels detected at σ > 0.5 (the author's code) on the whole split the thesis explains, at the
    classifier's training size, by an `xai_*` recipe's classifier. Table 3: VOC07 across architectures;
    4: RN101 across data sets; 6: the same with KUR."""
    dataset, arch, s = cfg["dataset"].get("name"), cfg["backbone"].get("name"), cfg["stage"]
    if (dataset not in XAI_DATASETS or split != XAI_SPLITS[dataset] or s.get("max_images") is not None
            or s.get("label_source", "detected") != "detected" or float(s.get("threshold", 0.5)) != 0.5
            or not xai_classifier(trained, dataset)
            or s.get("image_size", "classifier") not in ("classifier", trained["dataset"].get("crop_size"))):
        return None
    variant = kur_variant(kur, alpha)
    if variant == "KUR":
        return (6, XAI_DATASETS[dataset]) if arch == "resnet101" else None
    if variant == "baseline" and arch == "resnet101":
        return 4, XAI_DATASETS[dataset]
    if variant == "baseline" and dataset == "voc07" and arch in XAI_ARCHITECTURES:
        return 3, XAI_ARCHITECTURES[arch]
    return None


def xai_values(source: tuple[int, str] | None, methods) -> dict[str, dict[str, float]]:
    """{method: {metric key: published value (percent)}} of the methods the thesis reports (CAM, Grad-CAM++,
    Score-CAM, MinMax-CAM, D-MinMax-CAM); {} without a source."""
    if source is None:
        return {}
    table, part = source
    out = {}
    for method in methods:
        if method in XAI_METHODS:
            cells = {key: value(table, f"{name} {part}", XAI_METHODS[method]) for key, name in XAI_METRICS.items()}
            out[method] = {k: v for k, v in cells.items() if v is not None}
    return out
