"""Stage `pnoc`: P-NOC, P-OC with an adversarially trained "not so ordinary" classifier (thesis §B.2.1,
Eq. 27-28, Algorithm 1).

Each batch (manual optimisation, one optimiser per network):
1. generator ``net``, with ``oc`` fixed: ``L_f`` = the P-OC objective (Eq. 26/27); SGD-poly as every CAM
   stage;
2. every ``oc_update_every`` batches (Algorithm 1's ``i mod k_noc == 0``, i counted over the whole run,
   so every DDP rank takes the same branch), ``oc`` with ``net`` fixed:
   ``L_noc = lambda_noc * l(oc(x * (1 - [psi(A^r) > delta_noc])), y)`` on the images hard-masked by the
   generator's *detached* CAM of r, against the *full* label set. ``oc``'s head trains at 10x lr (the
   new-module group, as upstream). ``noc.oc_batchnorm``: ``train`` (the thesis code, `--mode normal`:
   oc in train mode during its own step, so its BatchNorm uses batch statistics, updates its running
   statistics and trains its affine parameters; in eval mode when the generator's loss uses it) or
   ``frozen`` (`--mode fix`: running statistics and affine parameters fixed, oc always in eval mode).

Gradient hygiene. During the generator's update the oc's parameters are toggled off
(`toggled_optimizer`), so ``L_f`` leaves no gradient in them, and the oc's gradients are cleared before
its own backward. The reference code instead lets ``grad_oc(lambda_cse * L_cse)`` of step 1 leak into
the oc's update (lucasdavid/PNOC@f250e0d:scripts/cam/train_pnoc.py), which makes the oc's objective partly
cooperative; ``noc.leak_generator_loss: true`` reproduces that on purpose (the leaked gradient accumulates
until the oc's next step, as upstream with ``oc_update_every > 1``).

Mixed precision. Lightning's manual optimisation has one precision plugin: under ``16-mixed`` a single
GradScaler scales each ``manual_backward`` with its current scale, and each wrapped ``opt.step()`` does
``unscale_(opt)``, ``scaler.step(opt)`` and ``scaler.update()`` (pytorch_lightning/plugins/precision/amp.py).
Each backward is followed by its own step before the next backward, so each optimiser's gradients are
unscaled by the scale they were produced with, and a non-finite step of one network only skips that
network's update (the scale backs off in between). The scaler is updated once per optimiser step, so
its growth interval counts optimiser steps (1 + 1/k per batch). The one case where gradients of two
scales could meet is the leak switch: the leaked oc gradients are rescaled to the current scale after
every generator step, so the leaked term keeps its nominal weight (upstream, with two scalers, it is
off by the ratio of their scales). ``bf16-mixed`` has no scaler.

Counters. Every ``opt.step()`` adds to ``global_step`` (1 + 1/k per batch), so ramps, schedules and the
alternation use ``Stage.batch_position`` (epoch x batches + batch index, restored on resume). The
generator's poly schedule spans all batches, the oc's ``batches // oc_update_every`` of its own steps.
Under DDP this stage needs ``find_unused_parameters: true`` (toggling leaves one network unused by
each backward).
"""
from __future__ import annotations

import torch

from wsss.losses.pnoc import hard_erase, noc_loss
from wsss.optim import param_groups, sgd_poly
from wsss.stages.generator import as_loggable, ramp
from wsss.stages.occse import freeze_batchnorm
from wsss.stages.poc import POCStage


class PNOCStage(POCStage):
    """P-OC generator ``net`` and the trainable ordinary classifier ``oc``, updated alternately."""

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        self.automatic_optimization = False
        k = int(self.scfg.noc.oc_update_every)
        if k < 1:
            raise ValueError(f"stage.noc.oc_update_every must be >= 1 (update oc every k batches), got {k}")
        self.oc_update_every = k

    OC_BATCHNORM = ("train", "frozen")

    def configure_oc(self) -> None:
        """P-NOC: ``oc`` is trained; its BatchNorm too unless ``noc.oc_batchnorm=frozen``."""
        mode = self.scfg.noc.oc_batchnorm
        if mode not in self.OC_BATCHNORM:
            raise ValueError(f"stage.noc.oc_batchnorm={mode!r}; expected one of {self.OC_BATCHNORM}")
        self.oc_batchnorm = mode
        if mode == "frozen":
            freeze_batchnorm(self.oc)

    @property
    def leak_generator_loss(self) -> bool:
        return bool(self.scfg.noc.leak_generator_loss)

    # -- optimisation ---------------------------------------------------------------------------------
    def configure_optimizers(self):
        s, n = self.scfg, self.scfg.noc
        total = self.batch_position()[1]
        common = dict(weight_decay=s.weight_decay, alpha_bias=s.lr_alpha_bias,
                      alpha_new=s.lr_alpha_new)
        gen_groups = param_groups([self.net.backbone], self.net.new_modules(), s.lr, **common)
        oc_groups = param_groups([self.oc.backbone], self.oc.new_modules(), s.lr * n.lr_factor,
                                 **common)
        schedule = dict(momentum=s.momentum, nesterov=s.nesterov,
                        power=s.poly_power)
        gen_opt, gen_sched = sgd_poly(gen_groups, total, **schedule)
        oc_opt, oc_sched = sgd_poly(oc_groups, max(1, total // self.oc_update_every), **schedule)
        return [gen_opt, oc_opt], [gen_sched, oc_sched]

    def grad_scale(self) -> float | None:
        """The GradScaler's current scale under 16-mixed, else None."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        return None if scaler is None else float(scaler.get_scale())

    def is_oc_batch(self, step: int) -> bool:
        """Algorithm 1: after the generator's update i <- i + 1; oc trains when i mod k == 0."""
        return (step + 1) % self.oc_update_every == 0

    def training_step(self, batch: dict, batch_idx: int) -> None:
        gen_opt, oc_opt = self.optimizers()
        gen_sched, oc_sched = self.lr_schedulers()
        images, labels = batch["image"], batch["label"]
        step, total = self.batch_position()

        parts, cams, erased = self.generator_update(images, labels, step, total, gen_opt, gen_sched)
        if self.is_oc_batch(step):
            parts.update(self.oc_update(images, labels, cams, erased, step, total, oc_opt, oc_sched))
        loss = parts.pop("loss")
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=len(batch["id"]))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["id"]))

    def generator_update(self, images, labels, step, total, opt, sched):
        """Step 1: ``L_f`` (Eq. 27) -> generator update. Returns log parts, detached CAMs and r."""
        scale_before = self.grad_scale() if self.leak_generator_loss else None  # (.item(): a device sync)
        if self.leak_generator_loss:
            out = self.generator_backward(images, labels, step, total, opt)
        else:
            with self.toggled_optimizer(opt):  # oc's parameters take no gradient from L_f
                out = self.generator_backward(images, labels, step, total, opt)
        opt.step()
        sched.step()
        opt.zero_grad()  # frees the generator's gradients before the oc's step (lower peak memory)
        if self.leak_generator_loss:
            self.rescale_oc_grads(scale_before)
        parts = as_loggable(out.parts)
        parts["loss"] = out.loss.detach()
        return parts, out.cams.detach(), out.erased

    def generator_backward(self, images, labels, step, total, opt):
        opt.zero_grad()
        out = self.generator_step(images, labels, step, total)
        self.manual_backward(out.loss)
        return out

    def rescale_oc_grads(self, scale_before: float | None) -> None:
        """Keep leaked oc gradients at the scaler's current scale (16-mixed: the generator's step may have
        changed it), so that the oc's step unscales them correctly."""
        scale_after = self.grad_scale()
        if scale_before is None or scale_after == scale_before:
            return
        for p in self.oc.parameters():
            if p.grad is not None:
                p.grad.mul_(scale_after / scale_before)

    def oc_update(self, images, labels, cams, erased, step, total, opt, sched) -> dict:
        """Step 2: ``L_noc`` (Eq. 28) on hard-masked images -> oc update, the generator fixed."""
        n = self.scfg.noc
        weight = ramp(n["noc_ramp"], step, total)
        with self.toggled_optimizer(opt):  # the generator's parameters take no gradient
            if not self.leak_generator_loss:
                opt.zero_grad()
            masked = hard_erase(images, cams.float(), erased, float(n.delta))
            self.oc.train(self.oc_batchnorm == "train")
            try:
                oc_logits, _ = self.oc(masked)
            finally:
                self.oc.eval()
            loss = noc_loss(oc_logits, labels, weight, self.scfg.label_smoothing)
            self.manual_backward(loss)
            opt.step()
            sched.step()
            opt.zero_grad()
        return {"noc": loss.detach(), "lambda_noc": torch.tensor(weight)}
