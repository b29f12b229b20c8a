"""Stage `affinity`: CAMs (+ saliency) → affinity labels → AffinityNet → random walk → pseudo masks.

Thesis §3.2 and §B.2.2 ("Guiding Random Walk using Saliency Maps"); reference
lucasdavid/PNOC@f250e0d:scripts/rw/, jiwoon-ahn/irn@a2ece00. Tasks (default order):

1. `affinity_labels`: confident fg / bg / unsure labels from the CAM artifacts of `stage.inputs.cams` and,
   when `stage.inputs.saliency` is set, the saliency maps (else the CAM-only background of IRN); label
   CRFs in a process pool; palette PNGs in `run_dir/affinity_labels/<split>/`.
2. `fit`: AffinityNet (IRN boundary branch, frozen backbone) trained with the affinity loss on the pixel
   pairs within `stage.radius` of the stride-4 grid of the train crops.
The tasks other than `fit` and `predict` live in `wsss.refine.tasks` (the package of these artifacts).

3. `predict` (the foundation task, through `predict_step`): boundary map with flip TTA, random walk of the
   stride-4 CAMs of the present classes (sparse, batched, on the module's device); npz `{keys, rw}` in
   `run_dir/rw/<split>/`, rw (n, H, W) (float16 or float32: `inference.storage`) divided by its global max,
   no background plane (the background is a constant threshold applied afterwards).
4. `pseudo_masks`: constant background threshold + label CRF, palette PNGs in `run_dir/pseudo_masks/<split>/`.
5. `evaluate`: mIoU against ground truth of the input CAMs and of the RW maps (threshold sweeps), of the
   pseudo masks and of the affinity labels (confident pixels). Ground truth is read here only.

Every artifact folder is written atomically per image, resumably (only missing files) and its manifest last.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wsss.artifacts import ArtifactDir, open_split
from wsss.cams.storage import storage_dtype
from wsss.data import transforms as T
from wsss.data.datamodule import WSSSDataModule
from wsss.data.datasets import TransformedSplit
from wsss.losses.affinity import affinity_loss
from wsss.models.affinitynet import AffinityNet
from wsss.ops.pairs import PairIndex, affinity_from_boundary, downsample_labels, grid_size, pair_labels
from wsss.optim import sgd_poly
from wsss.refine.random_walk import random_walk, upsample_and_normalise
from wsss.refine.rw_seeds import rw_seeds, seed_maps
from wsss.refine.tasks import AFFINITY_LABELS, LABELS, RW, WRITE_PSEUDO_MASKS, evaluate_affinity
from wsss.saliency.maps import open_saliency
from wsss.stage_contract import EVALUATE, Artifact, Task
from wsss.stages.base import Stage, load_backbone_from
from wsss.tasks import FIT_TASK, PREDICT_TASK

log = logging.getLogger(__name__)

FLIP_VIEWS = ("image", "canvas")


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
        labels = open_split(self.label_root, name, split.ids, ".png", self.cfg["name"], kind=LABELS)
        # IGNORE_BG_IMAGES (lucasdavid/PNOC@6c8950a:datasets/base.py)
        ids = [i for i in split.ids if split.label(i).sum() > 0]
        if not ids:
            raise ValueError(f"split {name!r} has no image with a label")
        c = self.cfg
        tf = T.train_transform(c["crop_size"], c["min_size"], c["max_size"], self.mean, self.std, **self.augment)
        ds = TransformedSplit(LabelledSplit(split, labels), tf, ids, require_label=True)
        return self._loader(ds, self.batch_size, shuffle=True, drop_last=len(ds) >= 2 * self.batch_size)


# -- the stage --------------------------------------------------------------------------------------
class AffinityStage(Stage):
    tasks = {LABELS: AFFINITY_LABELS, "fit": FIT_TASK, "predict": PREDICT_TASK,
             "pseudo_masks": WRITE_PSEUDO_MASKS, "evaluate": Task(evaluate_affinity, reads=(EVALUATE,))}
    default_tasks = ("affinity_labels", "fit", "predict", "pseudo_masks", "evaluate")
    artifact = Artifact(RW, ".npz")
    not_output_keys = ("pseudo_masks", "crf_processes")

    @staticmethod
    def check_config(cfg: dict) -> None:
        """Settings that would fail a later task (the pipeline asks before its first step runs)."""
        crop = int(cfg["dataset"]["crop_size"])
        radius = int(cfg["stage"]["radius"])
        try:
            PairIndex(*grid_size(crop, crop), radius)
        except ValueError as e:
            raise ValueError(f"stage.radius={radius} does not fit dataset.crop_size={crop} (the stride-4 "
                             f"grid of a training crop): {e}. Lower stage.radius or raise "
                             "dataset.crop_size") from None

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        self.check_config(cfg)
        s = self.scfg
        self.net = AffinityNet(self.make_backbone(), s.branch_channels, s.gn_groups,
                               s.freeze_backbone, s.stem_branch)
        if s.backbone_checkpoint:
            load_backbone_from(self.net.backbone, s.backbone_checkpoint, self.cfg["backbone"]["name"])
        self.radius = int(s.radius)
        self._pair_indices: dict[tuple[int, int], PairIndex] = {}
        self._checked: dict[tuple[str, str], ArtifactDir] = {}

    # -- inputs -----------------------------------------------------------------------------------
    @property
    def dataset_name(self) -> str:
        return self.cfg["dataset"]["name"]

    def _input(self, kind: str, split: str, ids: list[str], suffix: str) -> ArtifactDir:
        inputs = self.scfg.inputs
        if not inputs[kind]:
            raise ValueError(f"stage.inputs.{kind} is not set")
        if (kind, split) not in self._checked:
            self._checked[(kind, split)] = open_split(inputs[kind], split, ids, suffix, self.dataset_name)
        return self._checked[(kind, split)]

    def cam_input(self, split: str, ids: list[str]) -> ArtifactDir:
        return self._input("cams", split, ids, ".npz")

    def saliency_input(self, split: str, ids: list[str]) -> ArtifactDir | None:
        """The saliency folder of `split` (C²AM-H float maps or the saliency network's PNGs), or None."""
        if not self.scfg.inputs.saliency:
            return None
        if ("saliency", split) not in self._checked:
            self._checked[("saliency", split)] = open_saliency(self.scfg.inputs.saliency, split, ids,
                                                               self.dataset_name)
        return self._checked[("saliency", split)]

    def artifact_dir(self, kind: str, split: str) -> ArtifactDir:
        """The folder this run writes its `kind` artifacts of `split` to."""
        return ArtifactDir(self.run_dir / kind / split, self.suffix(kind))

    def own_artifacts(self, kind: str, split: str, ids: list[str]) -> ArtifactDir:
        """This run's finished `kind` artifacts of `split` (own folder, or a split holding all its ids)."""
        return open_split(self.run_dir / kind, split, ids, self.suffix(kind), self.dataset_name)

    @staticmethod
    def suffix(kind: str) -> str:
        return ".npz" if kind == RW else ".png"

    def label_splits(self) -> list[str]:
        return list(self.scfg[LABELS].splits or [self.cfg["dataset"]["train_split"]])

    # -- data and parameters ------------------------------------------------------------------------
    def datamodule(self) -> AffinityDataModule:
        s = self.scfg
        return AffinityDataModule(self.cfg["dataset"], batch_size=self.device_batch_size(), mean=self.norm_mean,
                                  std=self.norm_std, augment=s.augment, num_workers=self.cfg["num_workers"],
                                  label_root=self.run_dir / LABELS)

    def pretrained_modules(self):
        return [] if self.net.freeze_backbone else [self.net.backbone]

    def new_modules(self):
        return [self.net.projections, self.net.edge]

    def configure_optimizers(self):
        """One SGD group (lr, wd) over the trained parameters, poly decay
        (lucasdavid/PNOC@f250e0d:scripts/rw/train_affinity.py: no lr multipliers)."""
        s = self.scfg
        params = [p for p in self.net.parameters() if p.requires_grad]
        groups = [{"params": params, "lr": s.lr, "weight_decay": s.weight_decay}]
        opt, sched = sgd_poly(groups, self.total_steps(), s.momentum, s.nesterov,
                              s.poly_power)
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

        The image is zero-padded right/bottom to at least `inference.pad_to` first (IRN / P-NOC). With flips,
        `inference.flip_view: image` mirrors the image before padding, so that both views have the padding on
        their right, crops both to the grid and mirrors the second back (the thesis code's `get_edge`,
        lucasdavid/PNOC@f250e0d:core/networks.py:361-367, scripts/rw/inference.py:114); `canvas` mirrors the
        padded canvas instead (the padding then sits left of the mirrored image).
        """
        inf = self.scfg.inference
        height, width = image.shape[-2:]
        pad_to = inf.pad_to or 0
        pad = (0, max(0, pad_to - width), 0, max(0, pad_to - height))
        size = grid_size(height, width)
        flip_view = inf.flip_view
        if flip_view not in FLIP_VIEWS:
            raise ValueError(f"stage.inference.flip_view={flip_view!r}; expected one of {FLIP_VIEWS}")
        if inf.flip and flip_view == "image":
            views = F.pad(torch.cat([image, image.flip(-1)]), pad)
            logits = self.net(views).float()[:, 0, :size[0], :size[1]]
            return torch.sigmoid(logits[:1] / 2 + logits[1:].flip(-1) / 2)
        image = F.pad(image, pad)
        if inf.flip:
            return self.net.boundary_with_flip(image, size=size)
        return self.net.boundary(image)[..., :size[0], :size[1]]

    @torch.no_grad()
    def propagate_cams(self, image: torch.Tensor, cams: np.ndarray, seeds: np.ndarray | None = None) -> torch.Tensor:
        """RW maps (n, H, W) ∈ [0, 1] of one image's full-resolution CAMs (n, H, W)
        (lucasdavid/PNOC@f250e0d:scripts/rw/inference.py), seeded with its stride-4 CAMs `seeds` (n, ⌈H/4⌉,
        ⌈W/4⌉) when given, else with `cams` downsampled bilinearly."""
        inf = self.scfg.inference
        height, width = image.shape[-2:]
        if cams.shape[0] == 0:
            return torch.zeros((0, height, width))
        boundary = self.boundary_map(image).float()
        strided = seed_maps(cams, seeds, grid_size(height, width)).to(image.device)
        rw = random_walk(strided, boundary, inf.beta, inf.exp_times, inf.radius)
        return upsample_and_normalise(rw, (height, width))[0]

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        split = self.trainer.datamodule.predict_split
        cams = self.cam_input(split, self.trainer.datamodule.split(split).ids)
        store = storage_dtype(self.scfg.inference.storage)
        for i, image_id in enumerate(batch["id"]):
            image = batch["image"][i:i + 1]
            z = cams.read_npz(image_id)
            if z["cams"].shape[1:] != tuple(image.shape[-2:]):
                raise ValueError(f"{cams.path(image_id)}: CAMs are {z['cams'].shape[1:]} but image {image_id!r} is "
                                 f"{tuple(image.shape[-2:])}")
            rw = self.propagate_cams(image, z["cams"], rw_seeds(z, cams.path(image_id), self.scfg))
            self.writer.write_npz(image_id, keys=z["keys"].astype(np.int64),
                                      rw=rw.cpu().numpy().astype(store))


