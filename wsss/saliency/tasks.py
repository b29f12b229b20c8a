"""Tasks of the saliency stages: `predict_saliency`, `pseudo_saliency`, `evaluate_saliency`.

The generic `predict` task of `wsss.tasks` writes `.npz` CAMs; saliency is a PNG artifact, so the
saliency stages run these tasks instead (same sharding, resume and manifest rules):

* predict_saliency: `<run_dir>/saliency/<split>/<id><suffix>` of the module's `artifact` (C²AM-H: float
  `.npz` maps; the saliency network: uint8 `.png`, wsss/saliency/maps.py) for the images still missing, via
  the module's `predict_step` and `writer`; manifest written last by rank 0.
* pseudo_saliency: `<run_dir>/pseudo_saliency/<split>/<id>.png` ({0, 255}) from this run's float saliency,
  threshold + label dense CRF in the process pool, missing images only, each written as it comes back
  (wsss/fill.py).
* evaluate_saliency: Table-9 scores (`wsss.saliency.evaluate`) of each artifact kind the module
  lists in `evaluated_kinds`, on every eval split with masks, into metrics.json.
"""
from __future__ import annotations

import logging

import torch

from wsss.artifacts import ArtifactDir, config_hash, open_split
from wsss.fill import fill
from wsss.identity import derived_identity
from wsss.saliency.evaluate import evaluate_saliency
from wsss.saliency.maps import open_saliency, read_saliency
from wsss.saliency.pseudo import pseudo_saliency_map
from wsss.stage_contract import EVALUATE, OWN, PREDICT, Artifact, Task
from wsss.tasks import artifact_dir, ensure_weights, evaluated_splits, predict_missing, run_manifest

log = logging.getLogger(__name__)

SALIENCY, PSEUDO = "saliency", "pseudo_saliency"


def own_saliency(ctx, kind: str, split: str) -> ArtifactDir:
    """This run's finished `kind` maps of `split`, read with the file type their manifest records."""
    return open_saliency(ctx.run_dir / kind, split, ctx.dm.split(split).ids, ctx.plain["dataset"]["name"])


def predict_saliency(ctx) -> dict:
    ensure_weights(ctx)
    out = {}
    inference = ctx.plain["stage"].get("inference", {})
    for split in ctx.predict_splits():
        count = predict_missing(ctx, artifact_dir(ctx, split), split,
                                flipped=bool(getattr(ctx.module, "flipped", False)), inference=inference)
        out[f"{SALIENCY}/{split}/count"] = count
    return out


def pseudo_saliency(ctx) -> dict:
    out = {}
    p = dict(ctx.plain["stage"].get("pseudo") or {})
    threshold = float(p.get("threshold", 0.2))
    crf = p.get("crf") or {}
    iterations, gt_prob = int(crf.get("t", 0) or 0), float(crf.get("gt_prob", 0.7))
    processes = int(p.get("processes") or max(1, ctx.plain.get("num_workers") or 1))
    for split in ctx.predict_splits():
        if ctx.trainer.is_global_zero:
            ds = ctx.dm.split(split)
            source = own_saliency(ctx, SALIENCY, split)

            def items(ids, ds=ds, source=source):
                for i in ids:
                    yield i, (ds.load_image(i), read_saliency(source, i), bool(ds.label(i).sum() > 0), threshold,
                              iterations, gt_prob)

            producer = derived_identity(config_hash({"threshold": threshold, "crf": crf}), [source.root.parent])
            fill(ArtifactDir(ctx.run_dir / PSEUDO / split, ".png"), ds.ids, producer, items, pseudo_saliency_map,
                 dict(run_manifest(ctx, PSEUDO, split), threshold=threshold, crf=crf, source=str(source.root)),
                 processes)
            out[f"{PSEUDO}/{split}/count"] = len(ds.ids)
        ctx.trainer.strategy.barrier()
    return out


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
                folder = own_saliency(ctx, kind, split)
            except FileNotFoundError as e:
                log.warning("%s: not evaluated", e)
                continue
            scores = evaluate_saliency(ds, folder, ev.get("thresholds"), cam_dir, device)
            metrics.update(scores.as_dict(prefix=f"{kind}/{split}/"))
    for lg in ctx.trainer.loggers:
        lg.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
    return metrics


PREDICT_SALIENCY = Task(predict_saliency, reads=(PREDICT,), writes=(OWN,))
PSEUDO_SALIENCY = Task(pseudo_saliency, writes=(Artifact(PSEUDO, ".png"),))
EVALUATE_SALIENCY = Task(evaluate_saliency_task, reads=(EVALUATE,))
