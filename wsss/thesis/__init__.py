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

from wsss.models.cam_head import kur_alpha

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


#: the thesis's one MS COCO 2014 segmentation number (§ on P-OC: DeepLab trained on the P-OC chain's pseudo
#: masks, "36.4% over the MS COCO 2014 validation set")
COCO14_POC_DEEPLAB_VAL = 36.4


def coco14_counterpart(cfg: dict, split: str) -> float | None:
    """36.4 beside a DeepLab run's val2014 mIoU on COCO 2014 when its pseudo masks come from an affinity run on
    the CAMs of a P-OC run (the config.yaml beside each input folder says which stage wrote it), else None."""
    s = cfg["stage"]
    if (cfg["dataset"].get("name") != "coco14" or split != "val2014" or s.get("name") != "deeplab"
            or not isinstance(s.get("masks"), str) or s["masks"] == "gt"):
        return None
    affinity = _producer_config(s["masks"])
    if not affinity or affinity["stage"].get("name") != "affinity":
        return None
    cams = _producer_config((affinity["stage"].get("inputs") or {}).get("cams"))
    return COCO14_POC_DEEPLAB_VAL if cams and cams["stage"].get("name") == "poc" else None


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


def _kur_variant(kur: bool, alpha: float) -> str | None:
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
    variant = _kur_variant(kur, alpha)
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


def beside_classification(cfg: dict, metrics: dict) -> dict:
    """Table 5 beside the validation F-score of an `xai_*` recipe's classifier (`val/thesis_f1`,
    `val/thesis_f1_diff`, fractions like ours; `f2` on P:UAS); {} for other runs. Ours is the macro average
    at 0.5; the thesis does not say which average it used."""
    d, s = cfg["dataset"], cfg["stage"]
    row = CLASSIFIER_ROWS.get((d.get("name"), d.get("val_split")))
    kur = s.get("kur") or {}
    variant = _kur_variant(bool(kur.get("enabled")), kur_alpha(kur, d["num_classes"]))
    if (row is None or variant is None or cfg["backbone"].get("name") != "resnet101"
            or not xai_classifier(cfg, d.get("name")) or f"val/{row[1]}" not in metrics):
        return {}
    thesis = value(5, row[0], variant) / 100.0
    ours = float(metrics[f"val/{row[1]}"])
    return {f"val/thesis_{row[1]}": thesis, f"val/thesis_{row[1]}_diff": ours - thesis}
