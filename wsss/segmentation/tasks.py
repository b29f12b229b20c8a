"""Tasks of the segmentation stage (`evaluate` of `deeplab`, `export`) and `cam_masks`, which turns the
CAMs of a CAM stage into pseudo masks (any CAM stage: `python run.py stage=classifier tasks=[cam_masks]`).

The stages that run them list them in their `tasks` (wsss/stage_contract.py).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from wsss.artifacts import atomic_write_json, atomic_write_text
from wsss.identity import training_identity
from wsss.segmentation.evaluate import evaluate_predictions, iou_table_csv, iou_table_markdown, scores_path
from wsss.segmentation.export import export_predictions
from wsss.segmentation.pseudo_masks import pseudo_masks_from_cams
from wsss.stage_contract import EVALUATE, Artifact, Task
from wsss.tasks import evaluated_splits, own_artifacts

log = logging.getLogger(__name__)


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def segmentation_evaluate(ctx) -> dict:
    """mIoU and per-class IoU of `<run_dir>/predictions/<split>/` for every evaluation split with GT.

    Writes `evaluation/<split>.json` (classes, iou, miou, confusion) and the Table-11 style
    `evaluation/miou_table.{md,csv}` (one row per split); returns `predictions/<split>/miou` and
    `predictions/<split>/iou/<class>`.
    """
    if not ctx.trainer.is_global_zero:
        return {}
    metrics, rows = {}, {}
    name = f"{ctx.plain['stage']['name']}/{ctx.plain['run_name']}"
    for split, ds in evaluated_splits(ctx):
        preds = own_artifacts(ctx, split)
        scores = evaluate_predictions(ds, preds.root, _device(), ctx.plain["num_workers"])
        atomic_write_json(scores_path(ctx.run_dir, split), scores.as_dict())
        rows[f"{name} · {split}"] = scores
        kind = ctx.module.artifact.kind
        metrics[f"{kind}/{split}/miou"] = scores.miou
        metrics.update({f"{kind}/{split}/iou/{c}": v for c, v in zip(scores.classes, scores.iou)})
        log.info("%s %s mIoU %.2f%%", name, split, 100 * scores.miou)
    if rows:
        atomic_write_text(ctx.run_dir / "evaluation" / "miou_table.md", iou_table_markdown(rows))
        atomic_write_text(ctx.run_dir / "evaluation" / "miou_table.csv", iou_table_csv(rows))
        print(iou_table_markdown(rows), end="")
        for lg in ctx.trainer.loggers:
            lg.log_metrics({k: v for k, v in metrics.items() if v == v})
    return metrics


def export(ctx) -> dict:
    """The predictions of `stage.export.split` (VOC `test`) in the evaluation server's layout + archive."""
    if not ctx.trainer.is_global_zero:
        return {}
    opts = dict(ctx.plain["stage"].get("export") or {})
    split = opts.get("split", "test")
    preds = own_artifacts(ctx, split)
    path = export_predictions(preds.root, ctx.dm.split(split).ids, ctx.run_dir / "export",
                              ctx.module.num_classes, year=opts.get("year", "VOC2012"),
                              competition=opts.get("competition", "comp6"), split=split,
                              archive=opts.get("archive", "tar.gz"))
    log.info("exported %s predictions to %s", split, path)
    return {f"export/{split}/count": len(ctx.dm.split(split).ids)}


def best_threshold(ctx, split: str) -> float:
    """The background threshold with the best CAM mIoU on `split`'s ground truth (privileged, as upstream)."""
    from wsss.cams.evaluate import sweep

    ds = ctx.dm.split(split)
    if not ds.has_masks:
        raise ValueError(f"threshold=best needs ground-truth masks, but split {split!r} has none; set "
                         "stage.evaluation.pseudo_masks.threshold to a number")
    cams = own_artifacts(ctx, split)
    result = sweep(ds, cams.root, (ctx.plain["stage"].get("evaluation") or {}).get("thresholds"),
                   device=_device(), num_workers=ctx.plain["num_workers"])
    log.info("best CAM threshold on %s: %.2f (mIoU %.2f%%)", split, result.best_threshold, 100 * result.best_miou)
    return float(result.best_threshold)


def cam_masks(ctx) -> dict:
    """Pseudo masks from this run's CAMs: `<run_dir>/pseudo_masks/<split>/` for every predict split.

    Options in `stage.evaluation.pseudo_masks` (outside the run's identity): `threshold` (a number, or
    "best" = the sweep's best on `threshold_split`'s GT, default), `threshold_split` (default the first
    evaluation split), `splits` (default the predict splits).
    """
    made = getattr(ctx.module.artifact, "kind", None)
    if made != "cams":
        raise ValueError(f"tasks=[cam_masks] needs a CAM stage (artifact 'cams'); stage "
                         f"{ctx.plain['stage']['name']!r} makes {made!r}")
    if not ctx.trainer.is_global_zero:
        return {}
    opts = dict((ctx.plain["stage"].get("evaluation") or {}).get("pseudo_masks") or {})
    threshold = opts.get("threshold", "best")
    if threshold == "best":
        threshold = best_threshold(ctx, opts.get("threshold_split") or ctx.eval_splits()[0])
    out = {"pseudo_masks/threshold": float(threshold)}
    for split in opts.get("splits") or ctx.predict_splits():
        cams = own_artifacts(ctx, split)
        ids = ctx.dm.split(split).ids
        info = pseudo_masks_from_cams(cams.root, Path(ctx.run_dir) / "pseudo_masks" / split, ids, float(threshold),
                                      stage=ctx.plain["stage"]["name"], dataset=ctx.plain["dataset"]["name"],
                                      split=split, config_hash=training_identity(ctx.plain),
                                      checkpoint=(cams.manifest() or {}).get("checkpoint"),
                                      num_classes=ctx.module.num_classes)
        out[f"pseudo_masks/{split}/count"] = info["count"]
    return out


EVALUATE_SEGMENTATION = Task(segmentation_evaluate, reads=(EVALUATE,))
EXPORT = Task(export)
CAM_MASKS = Task(cam_masks, writes=(Artifact("pseudo_masks", ".png", "evaluation.pseudo_masks.splits"),))
