"""Tasks of the saliency stages: `predict_saliency`, `pseudo_saliency`, `evaluate_saliency`.

The generic `predict` task of `wsss.tasks` writes `.npz` CAMs; saliency is a PNG artifact, so the
saliency stages run these tasks instead (same sharding, resume and manifest rules):

* predict_saliency: `<run_dir>/saliency/<split>/<id>.png` (uint8 0..255) for the images still
  missing, via the module's `predict_step` and `saliency_writer`; manifest written last by rank 0.
* pseudo_saliency: `<run_dir>/pseudo_saliency/<split>/<id>.png` ({0, 255}) from this run's saliency,
  threshold + label dense CRF in a process pool, missing images only, in chunks (a killed job
  loses at most one chunk).
* evaluate_saliency: Table-9 scores (`wsss.saliency.evaluate`) of each artifact kind the module
  lists in `evaluated_kinds`, on every eval split with masks, into metrics.json.
"""
from __future__ import annotations

import logging

import torch

from wsss.artifacts import ArtifactDir, config_hash, folder_identity, open_split
from wsss.saliency.evaluate import evaluate_saliency
from wsss.saliency.pseudo import pseudo_saliency_many
from wsss.tasks import ensure_weights, evaluated_splits, own_artifacts, predict_missing, task, write_artifact_manifest

log = logging.getLogger(__name__)

SALIENCY, PSEUDO = "saliency", "pseudo_saliency"


def saliency_dir(ctx, kind: str, split: str) -> ArtifactDir:
    return ArtifactDir(ctx.run_dir / kind / split, ".png")


@task("predict_saliency")
def predict_saliency(ctx) -> dict:
    ensure_weights(ctx)
    out = {}
    inference = ctx.plain["stage"].get("inference", {})
    for split in ctx.predict_splits():
        count = predict_missing(ctx, saliency_dir(ctx, SALIENCY, split), split, SALIENCY, "saliency_writer",
                                flipped=bool(getattr(ctx.module, "flipped", False)), inference=inference)
        out[f"{SALIENCY}/{split}/count"] = count
    return out


@task("pseudo_saliency")
def pseudo_saliency(ctx) -> dict:
    out = {}
    p = dict(ctx.plain["stage"].get("pseudo") or {})
    threshold = float(p.get("threshold", 0.2))
    crf = p.get("crf") or {}
    iterations, gt_prob = int(crf.get("t", 0) or 0), float(crf.get("gt_prob", 0.7))
    processes = int(p.get("processes") or max(1, ctx.plain.get("num_workers") or 1))
    chunk = int(p.get("chunk", 64))
    for split in ctx.predict_splits():
        if ctx.trainer.is_global_zero:
            ds = ctx.dm.split(split)
            source = own_artifacts(ctx, split, SALIENCY, ".png")
            writer = saliency_dir(ctx, PSEUDO, split)
            producer = {"settings": config_hash({"threshold": threshold, "crf": crf}),
                        "inputs": {str(source.root.parent): folder_identity(source.root.parent)}}
            missing = writer.prepare(producer, ds.ids)
            log.info("pseudo saliency/%s: %d of %d images to write", split, len(missing), len(ds.ids))
            for start in range(0, len(missing), chunk):
                ids = missing[start:start + chunk]
                maps = pseudo_saliency_many([ds.load_image(i) for i in ids], [source.read_png(i) for i in ids],
                                            [ds.label(i).sum() > 0 for i in ids], threshold, iterations, gt_prob,
                                            processes)
                for image_id, m in zip(ids, maps):
                    writer.write_png(image_id, m)
            write_artifact_manifest(ctx, writer, PSEUDO, split, threshold=threshold, crf=crf, source=str(source.root))
            out[f"{PSEUDO}/{split}/count"] = len(ds.ids)
        ctx.trainer.strategy.barrier()
    return out


@task("evaluate_saliency")
def evaluate_saliency_task(ctx) -> dict:
    if not ctx.trainer.is_global_zero:
        return {}
    ev = ctx.plain["stage"].get("evaluation") or {}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    metrics: dict = {}
    dataset_name = ctx.plain["dataset"]["name"]
    for split, ds in evaluated_splits(ctx):
        cam_dir = None
        if ev.get("cams"):
            cam_dir = open_split(ev["cams"], split, ds.ids, ".npz", dataset_name).root
        for kind in ctx.module.evaluated_kinds:
            try:
                folder = own_artifacts(ctx, split, kind, ".png")
            except FileNotFoundError as e:
                log.warning("%s: not evaluated", e)
                continue
            scores = evaluate_saliency(ds, folder.root, ev.get("thresholds"), cam_dir, device)
            metrics.update(scores.as_dict(prefix=f"{kind}/{split}/"))
    for lg in ctx.trainer.loggers:
        lg.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
    return metrics
