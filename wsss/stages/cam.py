"""The CAM-producing stage that classifier, Puzzle-CAM, OC-CSE, P-OC and P-NOC build on.

It owns the CAM network, classification metrics on the validation split (no masks: weakly
supervised stages never select on ground truth), the multi-scale + flip CAM predict step, and
the `predict` / `evaluate` tasks. Subclasses change only `compute_loss` (and, for P-NOC, the
optimisation).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelF1Score, MultilabelFBetaScore

from wsss.cams.inference import inference_precision, multiscale_cams_and_seeds, normalize_present
from wsss.cams.storage import storage_dtype
from wsss.losses.classification import multilabel_soft_margin
from wsss.metric_names import validation_prefix
from wsss.models.cam_head import CAMNet, kur_alpha
from wsss.segmentation.tasks import CAM_MASKS
from wsss.stage_contract import Artifact
from wsss.stages.base import Stage
from wsss.tasks import EVALUATE_CAMS, FIT_TASK, PREDICT_TASK


class CAMStage(Stage):
    tasks = {"fit": FIT_TASK, "predict": PREDICT_TASK, "evaluate": EVALUATE_CAMS, "cam_masks": CAM_MASKS}
    default_tasks = ("fit", "predict", "evaluate")
    artifact = Artifact("cams", ".npz")

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        kur = self.scfg.kur
        alpha = kur_alpha(kur, self.num_classes)
        bias = bool(self.scfg.head.bias)  # the XAI classifier's dense bias (A.1.2)
        self.net = CAMNet(self.make_backbone(), self.num_classes, kur=bool(kur.enabled), kur_alpha=alpha,
                          bias=bias)
        metrics = MetricCollection({
            "f1": MultilabelF1Score(self.num_classes, average="macro"),
            "f2": MultilabelFBetaScore(2.0, self.num_classes, average="macro"),
            "map": MultilabelAveragePrecision(self.num_classes, average="macro"),
        })
        self.val_prefix = validation_prefix(self.cfg["dataset"])  # val/ or train_subset/
        self.val_metrics = metrics.clone(prefix=self.val_prefix)

    # -- parameters -----------------------------------------------------------------------------
    def pretrained_modules(self):
        return [self.net.backbone]

    def new_modules(self):
        return self.net.new_modules()

    def check_class_count(self, state: dict, path: Path) -> None:
        w = state.get("net.head.weight")
        if w is not None and w.shape[0] != self.num_classes:
            raise ValueError(f"{path}: checkpoint classifies {w.shape[0]} classes but dataset "
                             f"{self.cfg['dataset']['name']!r} has {self.num_classes}")

    # -- training -------------------------------------------------------------------------------
    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        logits, _ = self.net(batch["image"])
        loss = multilabel_soft_margin(logits, batch["label"], self.scfg.label_smoothing)
        return loss, {"cls": loss}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, parts = self.compute_loss(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in parts.items()}, prog_bar=False,
                      batch_size=len(batch["id"]))
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch["id"]))
        return loss

    def on_train_epoch_end(self) -> None:
        """Thesis Table 7: CAM mIoU on the train split after every epoch (`evaluation.monitor_train_cam_miou`),
        a logged number that nothing selects on (wsss/cams/monitor.py)."""
        if self.scfg.evaluation.monitor_train_cam_miou:
            from wsss.cams.monitor import METRIC, train_cam_miou

            self.log(METRIC, train_cam_miou(self), rank_zero_only=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits, _ = self.net(batch["image"])
        self.val_metrics.update(torch.sigmoid(logits.float()), batch["label"].long())
        self.log(f"{self.val_prefix}loss", multilabel_soft_margin(logits, batch["label"]), batch_size=len(batch["id"]),
                 sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), sync_dist=True)
        self.val_metrics.reset()

    # -- CAMs -----------------------------------------------------------------------------------
    def raw_cams(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)[1]

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        """Multi-scale + flip CAMs of the present classes, each divided by its maximum (`cams`), and the same at
        stride 4 (`cams_stride4`, the thesis code's random-walk seeds; `inference.stride4_seeds`)."""
        inf = self.scfg.inference
        data = self.trainer.datamodule
        with inference_precision(self.device.type, bool(inf.fp32)):
            images = batch["image"] if self.dtype == torch.bfloat16 else batch["image"].float()
            cams, seeds = multiscale_cams_and_seeds(
                self.raw_cams, images, inf.scales, inf.flip,
                inf.image_resize, int(inf.upsample_stride), data.mean, data.std,
                seeds=bool(inf.stride4_seeds), flip_merge=inf.flip_merge)
        store = storage_dtype(inf.storage)
        for i, image_id in enumerate(batch["id"]):
            maps, keys = normalize_present(cams[i], batch["label"][i])
            extra = {}
            if seeds is not None:
                stride4 = normalize_present(seeds[i], batch["label"][i])[0]
                extra["cams_stride4"] = stride4.cpu().float().numpy().astype(store)
            self.writer.write_npz(image_id, keys=keys.cpu().numpy().astype("int64"),
                                      cams=maps.cpu().float().numpy().astype(store), **extra)
