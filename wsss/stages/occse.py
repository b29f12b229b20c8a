"""Stage `occse`: class-specific adversarial erasing against a fixed ordinary classifier (thesis Eq. 6).

For each image a class r is drawn uniformly among its labels; the image is softly erased by the
generator's normalised CAM of r (the gradient flows through the mask into the generator) and the
ordinary classifier `oc` — a trained `classifier` stage checkpoint, frozen — must then find every
label but r: ``L = L_cls + lambda_cse(t) * l(oc(x * (1 - psi(A^r))), y minus {r})``, ``lambda_cse``
ramping 0.3 -> 1 over the run (lucasdavid/PNOC@f250e0d:scripts/cam/train_occse.py).

`oc` is a submodule, so it is saved in the stage's checkpoints (a checkpoint is self-contained and
P-NOC, which trains it, resumes), but it is never in an optimiser here. Its weights are loaded from
`stage.oc_checkpoint` when fitting starts (`setup("fit")`), before Lightning restores a `last.ckpt`,
so predicting from a finished run does not need the classifier checkpoint any more.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from wsss.losses.occse import occse_loss, sample_erased_classes, soft_erase_classes
from wsss.losses.pnoc import generator_loss
from wsss.models.checkpoints import load_matching, read_cam_network
from wsss.models.cam_head import CAMNet, kur_alpha
from wsss.stages.generator import GeneratorStage, GeneratorStep, ramp

log = logging.getLogger(__name__)


def read_classifier_state(path: str | Path, num_classes: int) -> tuple[dict, dict]:
    """The CAM network weights of a `classifier` stage checkpoint (keys without the `net.` prefix), and its
    KUR settings. Loaded with `weights_only=True`; a missing file or another class count is a clear error."""
    if not path:
        raise ValueError("stage.oc_checkpoint is not set: give the last.ckpt of a `stage=classifier` run "
                         "(the ordinary classifier of OC-CSE / P-OC / P-NOC)")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"stage.oc_checkpoint={str(path)!r} does not exist; train the ordinary "
                                f"classifier first with `python run.py stage=classifier ...` or point "
                                f"stage.oc_checkpoint at its checkpoints/last.ckpt")
    net, trained = read_cam_network(path, num_classes, "stage.oc_checkpoint")
    return net, (trained.get("stage") or {}).get("kur") or {}


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def freeze_batchnorm(module: nn.Module) -> None:
    """BatchNorm affine parameters out of training (the reference's `mode="fix"`); running statistics are
    frozen by keeping the module in eval mode (see `OCCSEStage.train`)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for p in m.parameters():
                p.requires_grad_(False)


class OCCSEStage(GeneratorStage):
    """CAM generator ``net`` regularised by a fixed ordinary classifier ``oc`` (Eq. 6)."""

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        self.oc = CAMNet(self.make_backbone(), self.num_classes).eval()  # Lightning keeps submodule modes
        self.configure_oc()

    def configure_oc(self) -> None:
        """OC-CSE: the ordinary classifier is fixed (no gradient, eval mode, no optimiser)."""
        freeze(self.oc)

    def train(self, mode: bool = True):
        super().train(mode)
        self.oc.eval()  # oc is in eval mode whenever the generator uses it (P-NOC switches it for its own step)
        return self

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.load_oc(self.scfg.oc_checkpoint)

    def load_oc(self, path: str | Path) -> None:
        state, kur = read_classifier_state(path, self.num_classes)
        load_matching(self.oc, state, path, "stage.oc_checkpoint", self.cfg["backbone"]["name"])
        if kur.get("enabled"):  # the classifier was trained with KUR: use its re-parametrised head
            self.oc.head.kur = True
            self.oc.head.kur_alpha = kur_alpha(kur, self.num_classes)
        log.info("ordinary classifier loaded from %s", path)

    # -- objective ----------------------------------------------------------------------------------
    def draw_erased(self, labels: torch.Tensor, step: int) -> torch.Tensor:
        """r per image, from a generator seeded by (seed, step): identical on every DDP rank and on a resumed
        run, so ranks differ only by their data."""
        seed = self.cfg.get("seed")
        g = torch.Generator().manual_seed((int(seed or 0) << 32) + int(step))
        return sample_erased_classes(labels, generator=g)

    def cse_terms(self, images: torch.Tensor, labels: torch.Tensor, cams: torch.Tensor, step: int,
                  total: int) -> tuple[dict, torch.Tensor]:
        """``L_cse`` (Eq. 6) with its weight ``lambda_cse``, and the erased classes r."""
        o = self.scfg.occse
        erased = self.draw_erased(labels, step)
        erased_images = soft_erase_classes(images, cams.float(), erased, o.mask_normalization,
                                           bool(o.relu_before_resize),
                                           gather_max=bool(o.gather_batch_max))
        oc_logits, _ = self.oc(erased_images)
        cse = occse_loss(oc_logits, labels, erased, self.scfg.label_smoothing)
        return {"cse": cse, "lambda_cse": ramp(o["cse_ramp"], step, total)}, erased

    def generator_step(self, images: torch.Tensor, labels: torch.Tensor, step: int,
                       total: int) -> GeneratorStep:
        cls, cams = self.classification_term(images, labels)
        cse, erased = self.cse_terms(images, labels, cams, step, total)
        loss = generator_loss(cls, cse=cse["cse"], cse_weight=cse["lambda_cse"])
        return GeneratorStep(loss, {"cls": cls, **cse}, cams, erased)
