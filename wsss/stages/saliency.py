"""Stage `saliency`: a PoolNet-style salient object detector trained on pseudo-saliency maps.

Reads `<stage.inputs.pseudo_saliency>/<train split>/<id>.png` ({0, 255}, from the ccam stage's
`pseudo_saliency` task), trains the edge-free PoolNet (`wsss.models.poolnet`) with BCE-with-logits
(lucasdavid/PNOC@f250e0d:poolnet/main_voc.py: Adam lr 5e-5, wd 5e-4, 9 epochs, loss summed over pixels per
image, frozen backbone BatchNorm), and predicts refined saliency maps σ(logits)·255 as uint8 PNG into
`<run_dir>/saliency/<split>/`. No ground-truth mask is used in training.

Tasks: fit, predict_saliency, evaluate_saliency (`wsss.saliency.tasks`).
"""
from __future__ import annotations

from pathlib import Path

import torch

from wsss.models.poolnet import PoolNet, saliency_loss
from wsss.saliency.data import SaliencyDataModule
from wsss.saliency.inference import doubled_small_image_saliency, multiscale_saliency, to_uint8
from wsss.saliency.tasks import EVALUATE_SALIENCY, PREDICT_SALIENCY
from wsss.stage_contract import Artifact
from wsss.stages.base import Stage
from wsss.tasks import FIT_TASK


class SaliencyStage(Stage):
    tasks = {"fit": FIT_TASK, "predict_saliency": PREDICT_SALIENCY, "evaluate_saliency": EVALUATE_SALIENCY}
    default_tasks = ("fit", "predict_saliency", "evaluate_saliency")
    artifact = Artifact("saliency", ".png")
    evaluated_kinds = ("saliency",)

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        s = self.scfg
        self.net = PoolNet(self.make_backbone(), level_channels=s.get("level_channels"),
                           ppm_bins=tuple(s.get("ppm_bins", (1, 3, 5))),
                           pool_sizes=tuple(s.get("pool_sizes", (2, 4, 8))),
                           frozen_bn=s.get("frozen_bn", True), stem_level=s.get("stem_level", False),
                           ppm=s.get("ppm", "ours"), bn_affine_trainable=s.get("bn_affine_trainable", True),
                           init=s.get("init", "default"))
        self.loss_reduction = s.get("loss_reduction", "sum")
        if self.loss_reduction not in ("sum", "mean"):
            raise ValueError(f"stage.loss_reduction={self.loss_reduction!r}; expected 'sum' or 'mean'")

    def datamodule(self) -> SaliencyDataModule:
        s = self.scfg
        folder = (s.get("inputs") or {}).get("pseudo_saliency")
        return SaliencyDataModule(self.cfg["dataset"], self.device_batch_size(), self.norm_mean, self.norm_std,
                                  mode="pseudo_saliency", inputs=folder, crop_size=s.get("crop_size"),
                                  augment=s.get("augment"), num_workers=self.cfg["num_workers"],
                                  train_images=s.get("train_images", "crop"),
                                  full_image_min_side=s.get("full_image_min_side", 0))

    # -- optimisation ---------------------------------------------------------------------------
    def pretrained_modules(self):
        return [self.net.backbone]

    def new_modules(self):
        return self.net.new_modules()

    def configure_optimizers(self):
        s = self.scfg
        if s.get("optimizer", "adam") != "adam":
            return super().configure_optimizers()  # SGD + poly with the usual parameter groups
        params = [p for p in self.net.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=s["lr"], weight_decay=s.get("weight_decay", 5e-4))

    # -- training -------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.net(batch["image"])
        loss = saliency_loss(logits.float(), batch["mask"], reduction=self.loss_reduction)
        n = len(batch["id"])
        if self.loss_reduction == "sum":
            loss = loss / n  # upstream: sum over pixels / (iter_size·batch); Lightning divides by iter_size
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=n)
        return loss

    # -- saliency -------------------------------------------------------------------------------
    def predict_step(self, batch: dict, batch_idx: int) -> None:
        inf = self.scfg.get("inference") or {}
        small_side = inf.get("double_small_side")  # the thesis code: images with a side <= 100 predicted at 2x
        if small_side and min(batch["image"].shape[-2:]) <= small_side:
            sal = doubled_small_image_saliency(self.net, batch["image"])
        else:
            sal = multiscale_saliency(self.net, batch["image"], inf.get("scales", (1.0,)), inf.get("flip", False),
                                      inf.get("activation", "sigmoid"))
        for i, image_id in enumerate(batch["id"]):
            self.writer.write_png(image_id, to_uint8(sal[i]))

    def check_class_count(self, state: dict, path: Path) -> None:
        if "net.score.weight" not in state:
            raise ValueError(f"{path}: not a saliency (PoolNet) checkpoint (no net.score weights)")
