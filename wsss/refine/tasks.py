"""Tasks of the affinity stage that write and score its artifacts (`affinity_labels`, `pseudo_masks`, its
`evaluate`); `fit` and `predict` are the foundation's, through `wsss.stages.affinity.AffinityStage`.

Every folder is written atomically per image, resumably (only missing files; files of other settings or
inputs are rewritten, `ArtifactDir.prepare`), in the process pool of `wsss.ops.pool`, manifest last.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from wsss.artifacts import ArtifactDir, config_hash, covering_folder
from wsss.data.ground_truth import ground_truth_mask
from wsss.fill import fill
from wsss.identity import derived_identity, training_identity
from wsss.metrics.segmentation import confusion_matrix, iou_per_class
from wsss.progress import progress
from wsss.refine.affinity_labels import affinity_labels
from wsss.refine.random_walk import pseudo_mask
from wsss.saliency.maps import read_saliency
from wsss.stage_contract import Artifact, Task
from wsss.tasks import evaluated_splits

log = logging.getLogger(__name__)

LABELS, RW, PSEUDO_MASKS = "affinity_labels", "rw", "pseudo_masks"


# -- tasks ------------------------------------------------------------------------------------------
def _affinity_stage(ctx):
    if getattr(ctx.module.artifact, "kind", None) != RW or not hasattr(ctx.module, "cam_input"):
        raise TypeError(f"this task belongs to stage=affinity, not stage={ctx.plain['stage']['name']}")
    return ctx.module


def _write_all(ctx, writer: ArtifactDir, ids: list[str], make_items: Callable[[list[str]], Iterable],
               fn: Callable, manifest: dict, inputs: list[Path]) -> int:
    """Fill `writer` with `fn` in the CRF pool (wsss/fill.py). The producer is the manifest's `config_hash`
    (settings) and the identity of the input folders read: files made from other settings or inputs go."""
    producer = derived_identity(manifest["config_hash"], inputs)
    processes = int(ctx.module.scfg.get("crf_processes", 1))
    return fill(writer, ids, producer, make_items, fn, manifest, processes, palette=True)


def make_affinity_labels(ctx) -> dict:
    """Affinity labels of `stage.affinity_labels.splits` (default: the train split) from CAMs (+ saliency)."""
    module = _affinity_stage(ctx)
    if not ctx.trainer.is_global_zero:
        return {}
    p = dict(module.scfg.get(LABELS) or {})
    params = (p.get("fg_threshold", 0.40), p.get("bg_threshold", 0.10), p.get("crf_iterations", 10),
              p.get("gt_prob", 0.7))
    out = {}
    for split in module.label_splits():
        ds = ctx.dm.split(split)
        cams, saliency = module.cam_input(split, ds.ids), module.saliency_input(split, ds.ids)

        def items(ids, ds=ds, cams=cams, saliency=saliency):
            for image_id in ids:
                z = cams.read_npz(image_id)
                sal = read_saliency(saliency, image_id) if saliency is not None else None
                yield image_id, (z["cams"], z["keys"], ds.load_image(image_id), sal, *params)

        writer = module.artifact_dir(LABELS, split)
        settings = {"inputs": module.scfg.get("inputs"), LABELS: p}
        n = _write_all(ctx, writer, ds.ids, items, affinity_labels, dict(
            stage=module.scfg["name"], kind=LABELS, dataset=module.dataset_name, split=split,
            config_hash=config_hash({"dataset": {k: ctx.plain["dataset"].get(k) for k in ("name", "args")}, **settings}), **settings,
            num_classes=module.num_classes), [c.root.parent for c in (cams, saliency) if c is not None])
        out.update({f"{LABELS}/{split}/count": len(ds.ids), f"{LABELS}/{split}/written": n})
    return out


def make_pseudo_masks(ctx) -> dict:
    """Pseudo masks of the predict splits: argmax over [bg threshold, RW maps], then a label CRF."""
    module = _affinity_stage(ctx)
    if not ctx.trainer.is_global_zero:
        return {}
    p = dict(module.scfg.get(PSEUDO_MASKS) or {})
    params = (p.get("bg_threshold", 0.30), p.get("crf_iterations", 1), p.get("gt_prob", 0.9))
    out = {}
    for split in ctx.predict_splits():
        ds = ctx.dm.split(split)
        rw = module.own_artifacts(RW, split, ds.ids)
        saliency = module.saliency_input(split, ds.ids) if p.get("use_saliency") else None

        def items(ids, ds=ds, rw=rw, saliency=saliency):
            for image_id in ids:
                z = rw.read_npz(image_id)
                sal = read_saliency(saliency, image_id) if saliency is not None else None
                yield image_id, (z["rw"], z["keys"], ds.load_image(image_id), *params, sal)

        writer = module.artifact_dir(PSEUDO_MASKS, split)
        n = _write_all(ctx, writer, ds.ids, items, pseudo_mask, dict(
            stage=module.scfg["name"], kind=PSEUDO_MASKS, dataset=module.dataset_name, split=split,
            config_hash=config_hash({"training": training_identity(ctx.plain), PSEUDO_MASKS: p}),
            checkpoint=(rw.manifest() or {}).get("checkpoint"), num_classes=module.num_classes, **{PSEUDO_MASKS: p}),
            [c.root.parent for c in (rw, saliency) if c is not None])
        out.update({f"{PSEUDO_MASKS}/{split}/count": len(ds.ids), f"{PSEUDO_MASKS}/{split}/written": n})
    return out


def label_confusion(ds, labels: ArtifactDir, num_labels: int, confident_only: bool = False) -> torch.Tensor:
    """(K, K) confusion of label PNGs against the ground truth; `confident_only` skips predicted 255 pixels."""
    total = torch.zeros(num_labels, num_labels, dtype=torch.long)
    for image_id in progress(ds.ids, f"evaluate {labels.root}", total=len(ds.ids)):
        gt = ground_truth_mask(ds, image_id)
        pred = labels.read_png(image_id)
        if pred.shape != gt.shape:
            raise ValueError(f"{labels.path(image_id)}: {pred.shape} but the mask of {image_id!r} is {gt.shape}")
        gt = torch.from_numpy(gt.astype(np.int64))
        pred = torch.from_numpy(pred.astype(np.int64))
        if confident_only:
            gt = torch.where(pred == 255, torch.full_like(gt, 255), gt)
        total += confusion_matrix(pred, gt, num_labels)
    return total


def _iou_metrics(prefix: str, confusion: torch.Tensor, classes: list[str]) -> dict:
    ious = iou_per_class(confusion)
    return {f"{prefix}/miou": float(ious.nanmean()), f"{prefix}/iou": dict(zip(classes, ious.tolist()))}


def evaluate_affinity(ctx) -> dict:
    """mIoU against ground truth of the input CAMs, the RW maps, the pseudo masks and the affinity labels."""
    from wsss.cams.evaluate import plot_curve, sweep

    module = _affinity_stage(ctx)
    if not ctx.trainer.is_global_zero:
        return {}
    ev = module.scfg.get("evaluation") or {}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    num_labels = module.num_classes + 1
    metrics, curves = {}, {}
    for split, ds in evaluated_splits(ctx):
        classes = ["background", *ds.classes]
        sweeps = {"cams": (module.cam_input(split, ds.ids), ev.get("thresholds"), "cams"),
                  RW: (module.own_artifacts(RW, split, ds.ids), ev.get("rw_thresholds"), "rw")}
        for name, (folder, thresholds, key) in sweeps.items():
            r = sweep(ds, folder.root, thresholds, device=device, num_workers=ctx.plain["num_workers"], key=key)
            curves[f"{name}/{split}"] = r
            metrics.update({f"{name}/{split}/{k}": v for k, v in r.as_dict().items()})
        masks = module.own_artifacts(PSEUDO_MASKS, split, ds.ids)
        metrics.update(_iou_metrics(f"{PSEUDO_MASKS}/{split}", label_confusion(ds, masks, num_labels), classes))
        labels = covering_folder(module.run_dir / LABELS, split, ds.ids, ".png")
        if labels is not None:   # affinity labels exist for the label splits (and their subsets) only
            confusion = label_confusion(ds, labels, num_labels, confident_only=True)
            metrics.update(_iou_metrics(f"{LABELS}/{split}", confusion, classes))
            gt_pixels = sum(int((m != 255).sum()) for m in map(ds.load_mask, ds.ids))
            metrics[f"{LABELS}/{split}/coverage"] = float(confusion.sum()) / max(1, gt_pixels)
    if curves:
        plot_curve(curves, module.run_dir / "affinity_miou_curve.png")
        for lg in ctx.trainer.loggers:
            lg.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
    return metrics


AFFINITY_LABELS = Task(make_affinity_labels, writes=(Artifact(LABELS, ".png", f"{LABELS}.splits", "train"),))
WRITE_PSEUDO_MASKS = Task(make_pseudo_masks, writes=(Artifact(PSEUDO_MASKS, ".png"),))
