"""Stage `affinity`: CAMs (+ saliency) → affinity labels → AffinityNet → random walk → pseudo masks.

Thesis §3.2 and §B.2.2 ("Guiding Random Walk using Saliency Maps"); reference pnoc-spec §9, wsss-spec §6.
Tasks (default order):

1. `affinity_labels`: confident fg / bg / unsure labels from the CAM artifacts of `stage.inputs.cams` and,
   when `stage.inputs.saliency` is set, the saliency maps (else the CAM-only background of IRN); label
   CRFs in a process pool; palette PNGs in `run_dir/affinity_labels/<split>/`.
2. `fit`: AffinityNet (IRN boundary branch, frozen backbone) trained with the affinity loss on the pixel
   pairs within `stage.radius` of the stride-4 grid of the train crops.
3. `predict` (the foundation task, through `predict_step`): boundary map with flip TTA, random walk of the
   stride-4 CAMs of the present classes (sparse, batched, on the module's device); npz `{keys, rw}` in
   `run_dir/rw/<split>/`, rw (n, H, W) float16 divided by its global max, no background plane (pnoc-spec
   §9.5: the background is a constant threshold applied afterwards).
4. `pseudo_masks`: constant background threshold + label CRF, palette PNGs in `run_dir/pseudo_masks/<split>/`.
5. `evaluate`: mIoU against ground truth of the input CAMs and of the RW maps (threshold sweeps), of the
   pseudo masks and of the affinity labels (confident pixels). Ground truth is read here only.

Every artifact folder is written atomically per image, resumably (only missing files) and its manifest last.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from wsss.artifacts import ArtifactDir, config_hash
from wsss.data import transforms as T
from wsss.data.datamodule import WSSSDataModule
from wsss.data.datasets import TransformedSplit
from wsss.data.ground_truth import ground_truth_mask
from wsss.losses.affinity import affinity_loss
from wsss.metrics.segmentation import confusion_matrix, iou_per_class
from wsss.models.affinitynet import AffinityNet
from wsss.models.checkpoints import load_checkpoint, state_dict_of
from wsss.optim import sgd_poly
from wsss.refine.affinity_labels import affinity_labels
from wsss.refine.pairs import PairIndex, affinity_from_boundary, downsample_labels, grid_size, pair_labels
from wsss.refine.random_walk import pseudo_mask, random_walk, upsample_and_normalise
from wsss.refine.rw_seeds import rw_seeds, seed_maps
from wsss.stages.base import Stage
from wsss.tasks import evaluated_splits, task, training_identity

log = logging.getLogger(__name__)

LABELS, RW, PSEUDO_MASKS = "affinity_labels", "rw", "pseudo_masks"


# -- a bounded, ordered process pool ----------------------------------------------------------------
def pool_imap(fn: Callable[..., Any], items: Iterable[tuple[Any, tuple]], processes: int = 1,
              window: int | None = None, context: str = "spawn") -> Iterator[tuple[Any, Any]]:
    """Yield `(key, fn(*args))` for every `(key, args)` of `items`, in order.

    With `processes > 1` the calls run in a `spawn` pool (safe after CUDA was initialised); at most
    `window` items (default 4 · processes) are loaded and in flight at a time, so a data set of any size
    streams through bounded memory while the caller writes finished results. `fn` must be picklable and
    should live in a light module (workers import it).
    """
    if processes < 1:
        raise ValueError(f"stage.crf_processes={processes}; expected >= 1")
    if processes == 1:
        for key, args in items:
            yield key, fn(*args)
        return
    window = window or 4 * processes
    with mp.get_context(context).Pool(processes) as pool:
        pending: deque = deque()
        for key, args in items:
            pending.append((key, pool.apply_async(fn, args)))
            if len(pending) >= window:
                done_key, result = pending.popleft()
                yield done_key, result.get()
        while pending:
            done_key, result = pending.popleft()
            yield done_key, result.get()


# -- data -------------------------------------------------------------------------------------------
class LabelledSplit:
    """A data set split whose masks are read from an artifact folder of label PNGs (the affinity labels)."""

    def __init__(self, split, labels: ArtifactDir):
        self.split, self.labels = split, labels
        self.ids = split.ids
        self.classes = split.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load_image(self, image_id: str) -> np.ndarray:
        return self.split.load_image(image_id)

    def label(self, image_id: str) -> np.ndarray:
        return self.split.label(image_id)

    def load_mask(self, image_id: str) -> np.ndarray:
        return self.labels.read_png(image_id)

    def mask_path(self, image_id: str) -> Path:
        return self.labels.path(image_id)


class AffinityDataModule(WSSSDataModule):
    """Train batches pair each crop with its affinity-label crop (same geometric transform, 255 padding)."""

    def __init__(self, *args, label_root: Path, **kwargs):
        super().__init__(*args, **kwargs)
        self.label_root = Path(label_root)

    def train_dataloader(self):
        name = self.cfg["train_split"]
        split = self.split(name)
        labels = ArtifactDir(self.label_root / name, ".png")
        labels.check({"dataset": self.cfg["name"], "split": name, "kind": LABELS},
                     producer_hint="the affinity_labels task of stage=affinity")
        ids = [i for i in split.ids if split.label(i).sum() > 0]   # IGNORE_BG_IMAGES (pnoc-spec §9.4)
        if not ids:
            raise ValueError(f"split {name!r} has no image with a label")
        c = self.cfg
        tf = T.train_transform(c["crop_size"], c["min_size"], c["max_size"], self.mean, self.std, **self.augment)
        ds = TransformedSplit(LabelledSplit(split, labels), tf, ids, require_label=True)
        return self._loader(ds, self.batch_size, shuffle=True, drop_last=len(ds) >= 2 * self.batch_size)


def load_backbone_from(backbone: torch.nn.Module, path: str | Path, prefix: str = "net.backbone.") -> None:
    """Initialise the backbone from a stage checkpoint (e.g. the classifier's), tensors under `prefix`."""
    state = state_dict_of(load_checkpoint(path, "stage.backbone_checkpoint"))
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not picked:
        raise ValueError(f"{path}: no tensor under {prefix!r}; expected a checkpoint of a CAM stage")
    backbone.load_state_dict(picked)
    log.info("backbone initialised from %s (%d tensors)", path, len(picked))


# -- the stage --------------------------------------------------------------------------------------
class AffinityStage(Stage):
    default_tasks = ("affinity_labels", "fit", "predict", "pseudo_masks", "evaluate")
    artifact = RW

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        s = self.scfg
        self.net = AffinityNet(self.make_backbone(), s.get("branch_channels", 32), s.get("gn_groups", 4),
                               s.get("freeze_backbone", True), s.get("stem_branch", True))
        if s.get("backbone_checkpoint"):
            load_backbone_from(self.net.backbone, s["backbone_checkpoint"])
        self.radius = int(s.get("radius", 10))
        self.cam_writer: ArtifactDir | None = None
        self._pair_indices: dict[tuple[int, int], PairIndex] = {}
        self._checked: dict[tuple[str, str], ArtifactDir] = {}

    # -- inputs -----------------------------------------------------------------------------------
    @property
    def dataset_name(self) -> str:
        return self.cfg["dataset"]["name"]

    def _input(self, kind: str, split: str, suffix: str) -> ArtifactDir:
        inputs = self.scfg.get("inputs") or {}
        if not inputs.get(kind):
            raise ValueError(f"stage.inputs.{kind} is not set")
        if (kind, split) not in self._checked:
            folder = ArtifactDir(Path(inputs[kind]) / split, suffix)
            producer = (inputs.get("producers") or {}).get(kind, "classifier" if kind == "cams" else "saliency")
            folder.check({"dataset": self.dataset_name, "split": split},
                         producer_hint=f"stage={producer} with split {split!r} among its predict splits, or point "
                                       f"stage.inputs.{kind} at its artifact folder")
            self._checked[(kind, split)] = folder
        return self._checked[(kind, split)]

    def cam_input(self, split: str) -> ArtifactDir:
        return self._input("cams", split, ".npz")

    def saliency_input(self, split: str) -> ArtifactDir | None:
        if not (self.scfg.get("inputs") or {}).get("saliency"):
            return None
        return self._input("saliency", split, ".png")

    def artifact_dir(self, kind: str, split: str) -> ArtifactDir:
        return ArtifactDir(self.run_dir / kind / split, ".png" if kind != RW else ".npz")

    def label_splits(self) -> list[str]:
        return list(self.scfg.get(LABELS, {}).get("splits") or [self.cfg["dataset"]["train_split"]])

    # -- data and parameters ------------------------------------------------------------------------
    def datamodule(self) -> AffinityDataModule:
        s = self.scfg
        return AffinityDataModule(self.cfg["dataset"], batch_size=s["batch_size"], mean=self.norm_mean,
                                  std=self.norm_std, augment=s.get("augment"), num_workers=self.cfg["num_workers"],
                                  label_root=self.run_dir / LABELS)

    def pretrained_modules(self):
        return [] if self.net.freeze_backbone else [self.net.backbone]

    def new_modules(self):
        return [self.net.projections, self.net.edge]

    def configure_optimizers(self):
        """One SGD group (lr, wd) over the trained parameters, poly decay (pnoc-spec §9.4: no lr multipliers)."""
        s = self.scfg
        params = [p for p in self.net.parameters() if p.requires_grad]
        groups = [{"params": params, "lr": s["lr"], "weight_decay": s["weight_decay"]}]
        opt, sched = sgd_poly(groups, self.total_steps(), s.get("momentum", 0.0), s.get("nesterov", False),
                              s.get("poly_power", 0.9))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def pair_index(self, height: int, width: int) -> PairIndex:
        if (height, width) not in self._pair_indices:
            self._pair_indices[(height, width)] = PairIndex(height, width, self.radius)
        return self._pair_indices[(height, width)]

    # -- training -----------------------------------------------------------------------------------
    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        boundary = self.net.boundary(batch["image"])
        height, width = boundary.shape[-2:]
        labels = downsample_labels(batch["mask"], (height, width))    # nearest, to the stride-4 grid
        index = self.pair_index(height, width)
        loss = affinity_loss(affinity_from_boundary(boundary, index), *pair_labels(labels, index))
        return loss.total, {"bg": loss.bg, "fg": loss.fg, "neg": loss.neg}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, parts = self.compute_loss(batch)
        n = len(batch["id"])
        self.log_dict({f"train/{k}": v.detach() for k, v in parts.items()}, batch_size=n)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=n)
        return loss

    # -- random walk --------------------------------------------------------------------------------
    def boundary_map(self, image: torch.Tensor) -> torch.Tensor:
        """Boundary probabilities (1, h, w) on the stride-4 grid of one normalised image (1, 3, H, W).

        The image is zero-padded right/bottom to at least `inference.pad_to` first (IRN / P-NOC).
        """
        inf = self.scfg.get("inference", {})
        height, width = image.shape[-2:]
        pad_to = inf.get("pad_to") or 0
        image = F.pad(image, (0, max(0, pad_to - width), 0, max(0, pad_to - height)))
        size = grid_size(height, width)
        if inf.get("flip", True):
            return self.net.boundary_with_flip(image, size=size)
        return self.net.boundary(image)[..., :size[0], :size[1]]

    @torch.no_grad()
    def propagate_cams(self, image: torch.Tensor, cams: np.ndarray, seeds: np.ndarray | None = None) -> torch.Tensor:
        """RW maps (n, H, W) ∈ [0, 1] of one image's full-resolution CAMs (n, H, W) (pnoc-spec §9.5), seeded
        with its stride-4 CAMs `seeds` (n, ⌈H/4⌉, ⌈W/4⌉) when given, else with `cams` downsampled bilinearly."""
        inf = self.scfg.get("inference", {})
        height, width = image.shape[-2:]
        if cams.shape[0] == 0:
            return torch.zeros((0, height, width))
        boundary = self.boundary_map(image).float()
        strided = seed_maps(cams, seeds, grid_size(height, width)).to(image.device)
        rw = random_walk(strided, boundary, inf.get("beta", 10.0), inf.get("exp_times", 8), inf.get("radius", 5))
        return upsample_and_normalise(rw, (height, width))[0]

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        split = self.trainer.datamodule.predict_split
        cams = self.cam_input(split)
        for i, image_id in enumerate(batch["id"]):
            image = batch["image"][i:i + 1]
            z = cams.read_npz(image_id)
            if z["cams"].shape[1:] != tuple(image.shape[-2:]):
                raise ValueError(f"{cams.path(image_id)}: CAMs are {z['cams'].shape[1:]} but image {image_id!r} is "
                                 f"{tuple(image.shape[-2:])}")
            rw = self.propagate_cams(image, z["cams"], rw_seeds(z, cams.path(image_id), self.scfg))
            self.cam_writer.write_npz(image_id, keys=z["keys"].astype(np.int64),
                                      rw=rw.cpu().numpy().astype(np.float16))


# -- tasks ------------------------------------------------------------------------------------------
def _affinity_stage(ctx) -> AffinityStage:
    if not isinstance(ctx.module, AffinityStage):
        raise TypeError(f"this task belongs to stage=affinity, not stage={ctx.plain['stage']['name']}")
    return ctx.module


def _write_all(ctx, writer: ArtifactDir, ids: list[str], make_items: Callable[[list[str]], Iterable],
               fn: Callable, manifest: dict) -> int:
    """Compute the missing files of `writer` with `fn` in the CRF pool; manifest last. Returns how many."""
    old = writer.manifest()
    if old is not None and old.get("config_hash") != manifest["config_hash"]:
        log.warning("%s was made with other settings (config_hash %s, now %s): rewriting it", writer.root,
                    old.get("config_hash"), manifest["config_hash"])
        writer.remove()
    writer.clean_temporaries()
    missing = writer.missing(ids)
    if missing:
        writer.invalidate()
    processes = int(ctx.module.scfg.get("crf_processes", 1))
    log.info("%s: %d of %d images to write (%d processes)", writer.root, len(missing), len(ids), processes)
    for image_id, array in pool_imap(fn, make_items(missing), processes=processes):
        writer.write_png(image_id, array, palette=True)
    left = writer.missing(ids)
    if left:
        raise RuntimeError(f"{writer.root}: {len(left)} images were not written, e.g. {left[:3]}")
    writer.write_manifest(**manifest)
    return len(missing)


@task(LABELS)
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
        cams, saliency = module.cam_input(split), module.saliency_input(split)

        def items(ids, ds=ds, cams=cams, saliency=saliency):
            for image_id in ids:
                z = cams.read_npz(image_id)
                sal = saliency.read_png(image_id) if saliency is not None else None
                yield image_id, (z["cams"], z["keys"], ds.load_image(image_id), sal, *params)

        writer = module.artifact_dir(LABELS, split)
        settings = {"inputs": module.scfg.get("inputs"), LABELS: p}
        n = _write_all(ctx, writer, ds.ids, items, affinity_labels, dict(
            stage=module.scfg["name"], kind=LABELS, dataset=module.dataset_name, split=split,
            config_hash=config_hash({"dataset": {k: ctx.plain["dataset"].get(k) for k in ("name", "args")}, **settings}), **settings,
            num_classes=module.num_classes))
        out.update({f"{LABELS}/{split}/count": len(ds.ids), f"{LABELS}/{split}/written": n})
    return out


@task(PSEUDO_MASKS)
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
        rw = module.artifact_dir(RW, split)
        rw_manifest = rw.check({"dataset": module.dataset_name, "split": split},
                               producer_hint="the predict task of stage=affinity")
        saliency = module.saliency_input(split) if p.get("use_saliency") else None

        def items(ids, ds=ds, rw=rw, saliency=saliency):
            for image_id in ids:
                z = rw.read_npz(image_id)
                sal = saliency.read_png(image_id) if saliency is not None else None
                yield image_id, (z["rw"], z["keys"], ds.load_image(image_id), *params, sal)

        writer = module.artifact_dir(PSEUDO_MASKS, split)
        n = _write_all(ctx, writer, ds.ids, items, pseudo_mask, dict(
            stage=module.scfg["name"], kind=PSEUDO_MASKS, dataset=module.dataset_name, split=split,
            config_hash=config_hash({"training": training_identity(ctx.plain), PSEUDO_MASKS: p}),
            checkpoint=rw_manifest.get("checkpoint"), num_classes=module.num_classes, **{PSEUDO_MASKS: p}))
        out.update({f"{PSEUDO_MASKS}/{split}/count": len(ds.ids), f"{PSEUDO_MASKS}/{split}/written": n})
    return out


def label_confusion(ds, labels: ArtifactDir, num_labels: int, confident_only: bool = False) -> torch.Tensor:
    """(K, K) confusion of label PNGs against the ground truth; `confident_only` skips predicted 255 pixels."""
    total = torch.zeros(num_labels, num_labels, dtype=torch.long)
    for image_id in ds.ids:
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
    from wsss.thesis import beside, pseudo_mask_row, value

    module = _affinity_stage(ctx)
    if not ctx.trainer.is_global_zero:
        return {}
    ev = module.scfg.get("evaluation") or {}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    num_labels = module.num_classes + 1
    metrics, curves = {}, {}
    for split, ds in evaluated_splits(ctx):
        classes = ["background", *ds.classes]
        expect = {"dataset": module.dataset_name, "split": split}
        sweeps = {"cams": (module.cam_input(split), ev.get("thresholds"), "cams"),
                  RW: (module.artifact_dir(RW, split), ev.get("rw_thresholds"), "rw")}
        for name, (folder, thresholds, key) in sweeps.items():
            folder.check(expect, producer_hint="the predict task of stage=affinity")
            r = sweep(ds, folder.root, thresholds, device=device, num_workers=ctx.plain["num_workers"], key=key)
            curves[f"{name}/{split}"] = r
            metrics.update({f"{name}/{split}/{k}": v for k, v in r.as_dict().items()})
        masks = module.artifact_dir(PSEUDO_MASKS, split)
        masks.check(expect, producer_hint="the pseudo_masks task of stage=affinity")
        metrics.update(_iou_metrics(f"{PSEUDO_MASKS}/{split}", label_confusion(ds, masks, num_labels), classes))
        row = pseudo_mask_row(ctx.plain)  # thesis Table 10 beside ours when this is its run
        metrics.update(beside(f"{PSEUDO_MASKS}/{split}", metrics[f"{PSEUDO_MASKS}/{split}/miou"],
                              value(10, row, split) if row else None))
        labels = module.artifact_dir(LABELS, split)
        if labels.manifest() is not None:   # affinity labels exist for the label splits only
            confusion = label_confusion(ds, labels, num_labels, confident_only=True)
            metrics.update(_iou_metrics(f"{LABELS}/{split}", confusion, classes))
            gt_pixels = sum(int((m != 255).sum()) for m in map(ds.load_mask, ds.ids))
            metrics[f"{LABELS}/{split}/coverage"] = float(confusion.sum()) / max(1, gt_pixels)
    if curves:
        plot_curve(curves, module.run_dir / "affinity_miou_curve.png")
        for lg in ctx.trainer.loggers:
            lg.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
    return metrics


# The foundation's `evaluate` task hands over to this (the stage's artifacts are not only CAMs).
AffinityStage.evaluate_task = staticmethod(evaluate_affinity)
