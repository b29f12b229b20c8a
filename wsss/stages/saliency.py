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
        self.net = PoolNet(self.make_backbone(), level_channels=s.level_channels,
                           ppm_bins=tuple(s.ppm_bins),
                           pool_sizes=tuple(s.pool_sizes),
                           frozen_bn=s.frozen_bn, stem_level=s.stem_level,
                           ppm=s.ppm, bn_affine_trainable=s.bn_affine_trainable,
                           init=s.init)
        self.loss_reduction = s.loss_reduction
        if self.loss_reduction not in ("sum", "mean"):
            raise ValueError(f"stage.loss_reduction={self.loss_reduction!r}; expected 'sum' or 'mean'")

    def datamodule(self) -> SaliencyDataModule:
        s = self.scfg
        folder = s.inputs.pseudo_saliency
        return SaliencyDataModule(self.cfg["dataset"], self.device_batch_size(), self.norm_mean, self.norm_std,
                                  mode="pseudo_saliency", inputs=folder, crop_size=s.crop_size,
                                  augment=s.augment, num_workers=self.cfg["num_workers"],
                                  train_images=s.train_images,
                                  full_image_min_side=s.full_image_min_side)

    # -- optimisation ---------------------------------------------------------------------------
    def pretrained_modules(self):
        return [self.net.backbone]

    def new_modules(self):
        return self.net.new_modules()

    def configure_optimizers(self):
        s = self.scfg
        if s.optimizer != "adam":
            return super().configure_optimizers()  # SGD + poly with the usual parameter groups
        params = [p for p in self.net.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)

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
        inf = self.scfg.inference
        small_side = inf.double_small_side  # the thesis code: images with a side <= 100 predicted at 2x
        if small_side and min(batch["image"].shape[-2:]) <= small_side:
            sal = doubled_small_image_saliency(self.net, batch["image"])
        else:
            sal = multiscale_saliency(self.net, batch["image"], inf.scales, inf.flip,
                                      inf.activation)
        for i, image_id in enumerate(batch["id"]):
            self.writer.write_png(image_id, to_uint8(sal[i]))

    def check_class_count(self, state: dict, path: Path) -> None:
        if "net.score.weight" not in state:
            raise ValueError(f"{path}: not a saliency (PoolNet) checkpoint (no net.score weights)")
