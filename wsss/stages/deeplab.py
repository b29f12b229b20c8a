"""Stage `deeplab`: DeepLabV3+ trained on pseudo masks (or ground truth), multi-scale + flip inference
with an optional dense CRF, mIoU tables and the VOC test-server export
(lucasdavid/PNOC@f250e0d:scripts/segmentation/, thesis §B.2.3).

* Masks: `stage.masks` is a pseudo-mask artifact folder holding `<split>/<id>.png` + manifest (e.g. the
  affinity stage's `pseudo_masks`), or `gt` (ground truth: the fully supervised upper bound).
* No peeking: training on pseudo masks validates on the pseudo masks of `stage.val_split` (or not at
  all when the folder lacks that split) and logs `val/pseudo_miou`; only a `masks: gt` run logs
  `val/miou`. Predictions use the last checkpoint, or with `stage.keep_best` the epoch with the best
  validation mIoU against that same masks folder (the thesis code's selection: pseudo masks, never GT).
* Tasks: `fit`, `predict` (palette PNGs in `<run_dir>/predictions/<split>/`), `evaluate` (mIoU +
  per-class IoU, `wsss.segmentation.tasks.segmentation_evaluate`), `export` (VOC server layout).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from wsss import learned
from wsss.cams.inference import inference_precision
from wsss.metrics.segmentation import IGNORE, ConfusionMatrixMetric
from wsss.models.deeplab import DeepLabV3Plus
from wsss.segmentation.crf_pool import LabelMapWriter, crf_params
from wsss.segmentation.data import SegmentationDataModule
from wsss.segmentation.inference import multiscale_probabilities
from wsss.segmentation.tasks import EVALUATE_SEGMENTATION, EXPORT
from wsss.stage_contract import Artifact
from wsss.stages.base import Stage, load_backbone_from
from wsss.tasks import FIT_TASK, PREDICT_TASK


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0,
                      ignore_index: int = IGNORE) -> torch.Tensor:
    """Pixel-wise cross-entropy over K classes, pixels labelled `ignore_index` left out of the mean."""
    if logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"logits are {tuple(logits.shape[-2:])} but masks are {tuple(target.shape[-2:])}")
    return F.cross_entropy(logits.float(), target.long(), ignore_index=ignore_index, label_smoothing=label_smoothing)


class DeepLabStage(Stage):
    tasks = {"fit": FIT_TASK, "predict": PREDICT_TASK, "evaluate": EVALUATE_SEGMENTATION, "export": EXPORT}
    default_tasks = ("fit", "predict", "evaluate")
    artifact = Artifact("predictions", ".png")
    not_output_keys = ("export",)

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m = self.scfg.model
        backbone = self.make_backbone()
        self.net = DeepLabV3Plus(backbone, self.num_classes + 1, output_stride=backbone.stride,
                                 aspp_rates=m.aspp_rates, norm=m.norm,
                                 low_level_channels=m.low_level_channels,
                                 decoder_channels=m.decoder_channels,
                                 aspp_dropout=m.aspp_dropout,
                                 decoder_dropouts=m.decoder_dropouts,
                                 low_level_stage=m.low_level_stage,
                                 align_corners=m.align_corners, gn_groups=m.gn_groups)
        if self.scfg.backbone_checkpoint:  # e.g. the CAM stage's: trained on the same images
            load_backbone_from(self.net.backbone, self.scfg.backbone_checkpoint, self.cfg["backbone"]["name"])
        self.val_confusion = ConfusionMatrixMetric(self.num_classes + 1)
        self._label_maps: LabelMapWriter | None = None
        self.last_val: tuple[str, float, float] | None = None

    @property
    def uses_gt(self) -> bool:
        return self.scfg.masks == "gt"

    def datamodule(self) -> SegmentationDataModule:
        s = self.scfg
        return SegmentationDataModule(self.cfg["dataset"], s.masks, batch_size=self.device_batch_size(),
                                      mean=self.norm_mean, std=self.norm_std, augment=s.augment,
                                      num_workers=self.cfg["num_workers"], train_split=s.train_split,
                                      val_split=s.val_split)

    # -- parameters -----------------------------------------------------------------------------
    def pretrained_modules(self):
        return [self.net.backbone]

    def new_modules(self):
        return self.net.new_modules()

    def check_class_count(self, state: dict, path: Path) -> None:
        w = state.get("net.decoder.classifier.weight")
        if w is not None and w.shape[0] != self.num_classes + 1:
            raise ValueError(f"{path}: checkpoint segments {w.shape[0]} classes but dataset "
                             f"{self.cfg['dataset']['name']!r} has {self.num_classes} + background")

    # -- training -------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = segmentation_loss(self.net(batch["image"]), batch["mask"], self.scfg.label_smoothing)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch["id"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.net(batch["image"])
        self.val_confusion.update(logits.argmax(1), batch["mask"])
        self.log("val/loss", segmentation_loss(logits, batch["mask"]), batch_size=len(batch["id"]), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        # Named by what it was measured against: only a fully supervised run sees GT here.
        key = "val/miou" if self.uses_gt else "val/pseudo_miou"
        miou = self.val_confusion.compute()["miou"].float()
        self.log(key, miou, sync_dist=False)
        if not self.trainer.sanity_checking:
            self.last_val = (key, float(miou), learned.all_background_miou(self.val_confusion.confusion))
        self.val_confusion.reset()
        self.keep_if_best(float(miou))

    # -- best validation epoch (stage.keep_best) -------------------------------------------------
    best_val_miou: float = -1.0

    def keep_if_best(self, miou: float) -> None:
        """With `stage.keep_best`, write checkpoints/best.ckpt whenever the validation mIoU (of the masks
        folder's val split: pseudo masks, no ground truth) beats every earlier one, as the thesis code's
        scripts/segmentation/train.py:234-245 (lucasdavid/PNOC@f250e0d); predict then uses it."""
        if not self.scfg.keep_best or self.trainer.sanity_checking or miou <= self.best_val_miou:
            return
        self.best_val_miou = miou
        self.trainer.save_checkpoint(self.run_dir / "checkpoints" / "best.ckpt", weights_only=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["best_val_miou"] = self.best_val_miou   # a resumed run keeps comparing with it

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.best_val_miou = float(checkpoint.get("best_val_miou", -1.0))

    def on_fit_start(self) -> None:
        self.last_val = None  # (metric, score, all-background score) of the latest validation

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero and self.last_val is not None:
            key, score, trivial = self.last_val
            learned.check(self.run_dir, f"deeplab ({key})", score, trivial, learned.ADVICE["deeplab"],
                          self.scfg.learned_nothing_margin)

    # -- inference ------------------------------------------------------------------------------
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        inf = self.scfg.inference
        data = self.trainer.datamodule
        with inference_precision(self.device.type, bool(inf.fp32)):
            images = images if self.dtype == torch.bfloat16 else images.float()
            return multiscale_probabilities(self.net, images, inf.scales,
                                            inf.flip, inf.fuse,
                                            inf.image_resize, data.mean, data.std)

    def on_predict_start(self) -> None:
        iterations, processes, params, gt_prob = crf_params(self.scfg.inference.crf)
        self._label_maps = LabelMapWriter(self.writer, iterations, processes, params, gt_prob)

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        probs = self.probabilities(batch["image"]).cpu().numpy()
        dm = self.trainer.datamodule
        for i, image_id in enumerate(batch["id"]):
            image = dm.split(dm.predict_split).load_image(image_id) if self._label_maps.iterations else None
            self._label_maps.submit(image_id, probs[i], image)

    def on_predict_end(self) -> None:
        if self._label_maps is not None:
            self._label_maps.close()
            self._label_maps = None

