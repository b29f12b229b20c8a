"""Stage `ccam`: C²AM (thesis Eq. 7) and, with `hints.enabled`, C²AM-H (thesis Eq. 29).

Training reads images of the train split and, when hints are on (or the polarity rule is
"hints"), the CAMs of a CAM run (`stage.inputs.cams/<split>/`): their max over classes follows the
image through the same resize / flip / crop (`wsss.saliency.data`) and is resized to the logit
grid (`hint_map`). No ground-truth mask is read in training or checkpoint selection (the last
checkpoint is the model).

Polarity: Eq. 7 cannot tell the foreground partition from the background one. At the end of the
last training epoch (before the checkpoint is written) the stage runs the final network in eval
mode over the training images (square-resized to the crop, no augmentation; at most
`polarity.max_images`), applies the configured rule to all those maps together and stores the
decision in the network's `flipped` buffer (saved in last.ckpt; predict orients the maps with it):

* "border" (the CCAM reference): flipped iff the mean of σ(S) over the border strips
  (`border_width` positions, at most half the map) is > 0.5;
* "hints": flipped iff the mean of σ(S) over the hinted positions (hint > δ_fg) is < 0.5;
* "none": never flipped (C²AM-H: the hint loss pins S to the foreground);
* "auto" (default): "none" with hints enabled, "border" without.

Tasks: fit, predict_saliency, pseudo_saliency, evaluate_saliency (`wsss.saliency.tasks`). The saliency maps
are float `.npz` maps (`stage.inference.storage`), thresholded as floats for the pseudo saliency
(`wsss.saliency.maps`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from wsss.cams.inference import inference_precision
from wsss.cams.storage import storage_dtype
from wsss.distributed import gather_rows
from wsss.losses.ccam import CCAMLoss, hint_map
from wsss.models.ccam import CCAM, border_mean
from wsss.saliency.data import SaliencyDataModule
from wsss.saliency.inference import multiscale_saliency
from wsss.saliency.maps import float_map
from wsss.saliency.tasks import EVALUATE_SALIENCY, PREDICT_SALIENCY, PSEUDO_SALIENCY
from wsss.stage_contract import Artifact
from wsss.stages.base import Stage
from wsss.tasks import FIT_TASK

log = logging.getLogger(__name__)

POLARITY_RULES = ("auto", "border", "hints", "none")


def resolve_polarity_rule(rule: str, hints_enabled: bool) -> str:
    if rule not in POLARITY_RULES:
        raise ValueError(f"stage.polarity.rule={rule!r}; expected one of {POLARITY_RULES}")
    if rule == "auto":
        return "none" if hints_enabled else "border"
    return rule


class CCAMStage(Stage):
    tasks = {"fit": FIT_TASK, "predict_saliency": PREDICT_SALIENCY, "pseudo_saliency": PSEUDO_SALIENCY,
             "evaluate_saliency": EVALUATE_SALIENCY}
    default_tasks = ("fit", "predict_saliency", "pseudo_saliency", "evaluate_saliency")
    artifact = Artifact("saliency", ".npz")   # float maps (wsss/saliency/maps.py)
    not_output_keys = ("pseudo",)
    evaluated_kinds = ("saliency", "pseudo_saliency")

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        s = self.scfg
        self.net = CCAM(self.make_backbone(), stages=tuple(s.feature_stages),
                        kernel_size=s.kernel_size)
        h = s.hints
        self.hints_enabled = bool(h.enabled)
        self.delta_fg = float(h.delta_fg)
        self.hint_interpolation = h.interpolation
        self.criterion = CCAMLoss(alpha=s.alpha, include_self=s.include_self,
                                  lambda_h=h.lambda_h, delta_fg=self.delta_fg,
                                  delta_bg=h.delta_bg, label_smoothing=h.label_smoothing)
        pol = s.polarity
        self.polarity_rule = resolve_polarity_rule(pol.rule, self.hints_enabled)
        self.border_width = int(pol.border_width)

    # -- data -----------------------------------------------------------------------------------
    @property
    def needs_hints(self) -> bool:
        return self.hints_enabled or self.polarity_rule == "hints"

    def datamodule(self) -> SaliencyDataModule:
        s = self.scfg
        inputs = s.inputs.cams if self.needs_hints else None
        if self.needs_hints and not inputs:
            raise ValueError("stage.inputs.cams must name a CAM artifact folder when hints are enabled or "
                             "stage.polarity.rule=hints")
        return SaliencyDataModule(self.cfg["dataset"], self.device_batch_size(), self.norm_mean, self.norm_std,
                                  mode="hints", inputs=inputs,
                                  crop_size=s.crop_size, resize_factor=s.resize_factor,
                                  augment=s.augment, num_workers=self.cfg["num_workers"])

    # -- parameters -----------------------------------------------------------------------------
    def pretrained_modules(self):
        return [self.net.backbone]

    def new_modules(self):
        return self.net.new_modules()

    @property
    def flipped(self) -> bool:
        return bool(self.net.flipped)

    # -- training -------------------------------------------------------------------------------
    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor | None]:
        out = self.net(batch["image"])
        hints = None
        if self.needs_hints:
            hints = hint_map(batch["hint"], tuple(out.logits.shape[-2:]), self.hint_interpolation)
        fg, bg = out.fg.float(), out.bg.float()
        if self.scfg.gather_contrast:  # Eq. 7 over the step's whole batch, as DataParallel
            fg, bg = gather_rows(fg), gather_rows(bg)
        parts = self.criterion(fg, bg, out.logits.float(), hints if self.hints_enabled else None)
        return parts.pop("loss"), parts, out.logits, hints

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, parts, _, _ = self.compute_loss(batch)
        n = len(batch["id"])
        self.log_dict({f"train/{k}": v.detach() for k, v in parts.items()}, batch_size=n)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=n)
        return loss

    # -- polarity -------------------------------------------------------------------------------
    def polarity_vote(self, logits: torch.Tensor, hints: torch.Tensor | None) -> torch.Tensor:
        """[statistic sum, count] of one batch of raw logits (B, 1, h, w) for the polarity rule."""
        probs = torch.sigmoid(logits.float())
        if self.polarity_rule == "border":
            width = max(1, min(self.border_width, min(probs.shape[-2:]) // 2))
            n = probs.shape[0]
            return torch.stack([border_mean(probs, width) * n, torch.tensor(float(n), device=probs.device)])
        hinted = (hints > self.delta_fg).float()
        return torch.stack([(probs * hinted).sum(), hinted.sum()])

    @torch.no_grad()
    def decide_polarity(self) -> bool | None:
        """Run the rule on the (un-augmented) training images in eval mode and store it in `net.flipped`.

        Equals `foreground_is_flipped(probs, rule, hints)` on all those maps at once. Each rank votes
        on its shard; the sums are reduced. Returns the decision (None when nothing could vote).
        """
        if self.polarity_rule == "none":
            return None
        was_training = self.training
        self.eval()
        votes = torch.zeros(2, device=self.device)
        max_images = self.scfg.polarity.max_images
        rank, world = self.trainer.global_rank, self.trainer.world_size
        for batch in self.trainer.datamodule.polarity_dataloader(max_images, rank, world):
            logits = self.net(batch["image"].to(self.device)).logits
            hints = None
            if self.polarity_rule == "hints":
                hints = hint_map(batch["hint"].to(self.device), tuple(logits.shape[-2:]), self.hint_interpolation)
            votes += self.polarity_vote(logits, hints)
        self.train(was_training)
        votes = self.trainer.strategy.reduce(votes, reduce_op="sum")
        total, count = float(votes[0]), float(votes[1])
        if count == 0:
            log.warning("polarity rule %r found nothing to vote on; keeping flipped=%s", self.polarity_rule,
                        self.flipped)
            return None
        mean = total / count
        flipped = mean > 0.5 if self.polarity_rule == "border" else mean < 0.5
        self.net.flipped.fill_(flipped)
        log.info("polarity (%s rule): mean %.4f over %d -> flipped=%s", self.polarity_rule, mean, int(count), flipped)
        return flipped

    def on_train_epoch_end(self) -> None:
        """After the last epoch, decide the polarity (before LastCheckpoint writes last.ckpt)."""
        if self.current_epoch + 1 >= (self.trainer.max_epochs or 0) or self.trainer.should_stop:
            if self.decide_polarity() is not None:
                self._decided = True
                self.log("train/flipped", float(self.flipped), batch_size=1)

    def on_train_start(self) -> None:
        self._decided = self.polarity_rule == "none"

    def on_train_end(self) -> None:
        if not getattr(self, "_decided", True):  # stopped by max_steps / time: decide for this process
            log.warning("fit ended before its last epoch: polarity decided now, not stored in last.ckpt")
            self.decide_polarity()

    # -- saliency -------------------------------------------------------------------------------
    def saliency_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.foreground_logits(self.net(images).logits)

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        inf = self.scfg.inference
        data = self.trainer.datamodule
        with inference_precision(self.device.type, bool(inf.fp32)):
            images = batch["image"] if self.dtype == torch.bfloat16 else batch["image"].float()
            sal = multiscale_saliency(self.saliency_logits, images, inf.scales,
                                      inf.flip, inf.activation,
                                      inf.image_resize,
                                      int(inf.upsample_stride), data.mean, data.std)
        store = storage_dtype(inf.storage)
        for i, image_id in enumerate(batch["id"]):
            self.writer.write_npz(image_id, **float_map(sal[i], store))

    def check_class_count(self, state: dict, path: Path) -> None:
        if "net.disentangler.conv.weight" not in state:
            raise ValueError(f"{path}: not a ccam checkpoint (no net.disentangler weights)")
