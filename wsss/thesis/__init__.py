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


def cam_row(cfg: dict, split: str) -> str | None:
    """Table 7's row of the run described by the resolved config `cfg`, when it is one of the thesis's CAM
    runs: a voc12_rs269_* recipe (or the canonical classifier) with ResNeSt-269 on VOC12 train."""
    if split != "train" or not _thesis_setup(cfg):
        return None
    return CAM_ROWS.get((cfg["stage"].get("name"), cfg.get("run_name")))


def cam_counterpart(cfg: dict, split: str) -> float | None:
    """Table 7's TTA mIoU (percent) of the run described by `cfg` (see :func:`cam_row`), or None."""
    row = cam_row(cfg, split)
    return value(7, row, "TTA") if row else None


def beside_cam_miou(cfg: dict, split: str, prefix: str, miou: float) -> dict:
    """`{prefix}/thesis_miou` and `{prefix}/thesis_diff` (ours − thesis, as fractions like `miou`), or {}."""
    return beside(prefix, miou, cam_counterpart(cfg, split))


def _thesis_setup(cfg: dict) -> bool:
    return cfg["dataset"].get("name") == "voc12" and cfg["backbone"].get("name") == "resnest269"


def pseudo_mask_row(cfg: dict) -> str | None:
    """Table 10's row of an affinity run: the voc12_affinity_rs269 recipe (run `default`) on P-NOC CAMs with
    the C²AM-H saliency, the thesis's final pipeline (row "P-OC+LS+C2AM-H+NOC")."""
    s = cfg["stage"]
    producers = (s.get("inputs") or {}).get("producers") or {}
    if (not _thesis_setup(cfg) or s.get("name") != "affinity" or cfg.get("run_name") != "default"
            or producers.get("cams") != "pnoc" or not (s.get("inputs") or {}).get("saliency")):
        return None
    return "P-OC+LS+C2AM-H+NOC"


def segmentation_row(cfg: dict) -> str | None:
    """Table 2's row of a DeepLab run: the voc12_deeplab_rs269 recipe (run `default`) trained on the pseudo
    masks of the thesis's affinity run (:func:`pseudo_mask_row` of the config.yaml beside `stage.masks`)."""
    s = cfg["stage"]
    if not _thesis_setup(cfg) or s.get("name") != "deeplab" or cfg.get("run_name") != "default" or not s.get("masks"):
        return None
    producer = _producer_config(s["masks"])
    return "P-NOC+LS+C2AM-H" if producer and pseudo_mask_row(producer) else None


def beside(prefix: str, ours: float, thesis_percent: float | None) -> dict:
    """`{prefix}/thesis_miou` and `{prefix}/thesis_diff` (ours − thesis, fractions like `ours`), or {}."""
    if thesis_percent is None:
        return {}
    return {f"{prefix}/thesis_miou": thesis_percent / 100.0, f"{prefix}/thesis_diff": ours - thesis_percent / 100.0}


def _producer_config(folder) -> dict | None:
    """The resolved config of the run whose artifact folder is `folder` (its config.yaml), or None."""
    path = Path(str(folder)).parent / "config.yaml"
    if not folder or not path.is_file():
        return None
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path))


def saliency_row(cfg: dict) -> tuple[str, str] | None:
    """Table 9's (row without its `cams=` part, column) of a saliency run of the thesis's final pipeline: the
    voc12_ccamh_rs269 recipe (C²AM-H RS269 with hints from the P-NOC CAMs; column P, the prior) and the
    voc12_poolnet_rn50 recipe trained on that run's pseudo saliency (column R, refined); run `default`, VOC12."""
    s = cfg["stage"]
    if cfg["dataset"].get("name") != "voc12" or cfg.get("run_name") != "default":
        return None
    if s.get("name") == "ccam" and cfg["backbone"].get("name") == "resnest269" \
            and (s.get("hints") or {}).get("enabled") and s.get("inputs_producer") == "stage=pnoc":
        return "C2AM-H RS269 hints=RS269 P-NOC+LS", "P"
    if s.get("name") == "saliency" and cfg["backbone"].get("name") == "resnet50":
        producer = _producer_config((s.get("inputs") or {}).get("pseudo_saliency"))
        prior = saliency_row(producer) if producer else None
        return (prior[0], "R") if prior and prior[1] == "P" else None
    return None


def beside_saliency(cfg: dict, split: str, prefix: str, class_miou: float, cam_miou: float | None) -> dict:
    """Table 9 beside a saliency evaluation on VOC12 train: `{prefix}class/thesis_*` (classes from the ground
    truth, the thesis's `cams=GT` rows) and `{prefix}cam/thesis_*` (classes from the P-NOC CAMs)."""
    row = saliency_row(cfg) if split == "train" else None
    if row is None:
        return {}
    out = beside(f"{prefix}class", class_miou, value(9, f"{row[0]} cams=GT", row[1]))
    if cam_miou is not None and "pnoc/" in str((cfg["stage"].get("evaluation") or {}).get("cams", "")):
        out.update(beside(f"{prefix}cam", cam_miou, value(9, f"{row[0]} cams=RS269 P-NOC+LS", row[1])))
    return out
