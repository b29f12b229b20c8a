"""MinMax-CAM and D-MinMax-CAM (David et al., VISAPP 2022, doi 10.5220/0010807800003124; thesis §B.1.1).

For image x with context label set C_x (the detections σ(s) > 0.5 by default), label u and
N_x = C_x ∖ {u}, n = |C_x|, the objective contrasts u with the other present labels (eq. 18):

    J_u = a_pos·S_u − a_neg/max(n−1, 1) · Σ_{c∈N_x} S_c

* MinMax-Grad-CAM (eq. 19): w_k = Σ_ij ∂J_u/∂A_kij (a sum, not a mean).
* MinMax-CAM (eq. 21), GAP + linear head: w_k = a_pos·W_uk − a_neg/max(n−1, 1) · Σ_{c∈N_x} W_ck.
* D-MinMax-Grad-CAM (eq. 22–23): α_k = Σ_ij [relu(∂J0) − relu(∂J1) + min(0, ∂J2)] with
  J0 = a_pos·S_u, J1 = a_neg/max(n−1, 1)·Σ_{N_x} S, J2 = a_bg/max(n, 1)·Σ_{C_x} S.
* D-MinMax-CAM (eq. 24): α_k = a_pos·relu(W_uk) − a_neg/max(n−1, 1)·relu(Σ_{N_x} W_k)
  + a_bg/max(n, 1)·min(0, Σ_{C_x} W_k).

ReLU and min are applied after the sums over classes, as in the official code
(lucasdavid/minmax-cam@be94495:src/minmax.py). For a label u outside C_x, N_x is all of C_x. The maps are
ReLU'd and min-max normalised by the CamMethod post-processing. For a GAP head ∂S_c/∂A_kij = W_ck/hw, so each
gradient form equals its weight form exactly (no 1/hw factor).
"""
from __future__ import annotations

import torch

from wsss.xai.methods.base import CamMethod, spatial_sum, weighted_sum
from wsss.xai.split import SplitModel

FORMS = ("auto", "weights", "gradient")


class MinMaxCAM(CamMethod):
    """MinMax-CAM (weight form, eq. 21) or MinMax-Grad-CAM (gradient form, eq. 19).

    Args:
        a_pos, a_neg: weights of the label's own score and of the mean score of the other labels.
        threshold: detection threshold on σ(s) defining C_x when no `context` is given.
        form: "weights" (needs a GAP + linear head), "gradient" (any head), or "auto"
            (weights when the head is linear).
        **kwargs: CamMethod options.
    """

    name, display_name = "minmax_cam", "MinMax-CAM"

    uses_gradients = True
    decomposed = False
    a_bg = 0.0  # no background term in the plain form

    def __init__(self, a_pos: float = 1.0, a_neg: float = 1.0, threshold: float = 0.5,
                 form: str = "auto", **kwargs):
        super().__init__(**kwargs)
        if form not in FORMS:
            raise ValueError(f"form={form!r}; expected one of {FORMS}")
        self.a_pos = a_pos
        self.a_neg = a_neg
        self.threshold = threshold
        self.form = form

    def context_set(self, logits: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """(B, C) float 0/1 label set C_x: the given context, or the detections σ(s) > threshold."""
        if context is None:
            return (torch.sigmoid(logits.detach().float()) > self.threshold).to(logits.dtype)
        if context.shape != logits.shape:
            raise ValueError(f"context has shape {tuple(context.shape)}; "
                             f"expected (B, C) = {tuple(logits.shape)}")
        return context.to(device=logits.device, dtype=logits.dtype).clamp(0, 1)

    def use_weights(self, model: SplitModel) -> bool:
        if self.form == "weights" and not model.has_linear_head:
            raise ValueError(f"{type(self).__name__}(form='weights') needs a GAP + linear head "
                             "(SplitModel.from_gap_classifier); use form='gradient'")
        return self.form == "weights" or (self.form == "auto" and model.has_linear_head)

    def objectives(self, detected: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Coefficients over classes (B, L, C) of J0 = a_pos·S_u and J1 = a_neg·mean_{N_x} S,
        and (B, 1, C) of J2 = a_bg·mean_{C_x} S."""
        num_classes = detected.shape[1]
        own = torch.nn.functional.one_hot(targets.clamp(min=0), num_classes).to(detected.dtype)
        others = detected[:, None, :] * (1 - own)
        n = detected.sum(dim=1)
        j0 = self.a_pos * own
        j1 = self.a_neg * others / (n - 1).clamp(min=1)[:, None, None]
        j2 = self.a_bg * detected[:, None, :] / n.clamp(min=1)[:, None, None]
        return j0, j1, j2

    def raw_maps(self, model: SplitModel, images: torch.Tensor, activations: torch.Tensor,
                 logits: torch.Tensor, targets: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        detected = self.context_set(logits, context).to(activations.dtype)
        j0, j1, j2 = self.objectives(detected, targets)
        acts = activations.detach()
        if self.use_weights(model):
            weight = model.linear_weight().to(acts.dtype)
            return weighted_sum(self.combine(j0 @ weight, j1 @ weight, j2 @ weight), acts)
        h, w = acts.shape[-2:]
        if not self.decomposed:  # eq. 19-20: J_u is linear in the scores, one gradient per label
            grads = model.score_gradients(activations, j0 - j1, logits).to(acts.dtype)
            return weighted_sum(spatial_sum(grads, h * w), acts)
        num_targets = targets.shape[1]
        grads = model.score_gradients(activations, torch.cat([j0, j1, j2], dim=1), logits).to(acts.dtype)
        g0, g1, g2 = grads[:, :num_targets], grads[:, num_targets:2 * num_targets], grads[:, -1:]
        return weighted_sum(spatial_sum(self.combine(g0, g1, g2), h * w), acts)

    def combine(self, own: torch.Tensor, others: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        """Per-kernel (or per-position) weights from the three objectives' weights/gradients."""
        return own - others


class DMinMaxCAM(MinMaxCAM):
    """D-MinMax-CAM (eq. 24) or D-MinMax-Grad-CAM (eq. 22–23): positive, negative and background parts.

    Args:
        a_bg: weight of the background (overall negative) term.
        Others as MinMaxCAM.
    """

    name, display_name = "d_minmax_cam", "D-MinMax-CAM"

    decomposed = True

    def __init__(self, a_pos: float = 1.0, a_neg: float = 1.0, a_bg: float = 1.0, threshold: float = 0.5,
                 form: str = "auto", **kwargs):
        super().__init__(a_pos=a_pos, a_neg=a_neg, threshold=threshold, form=form, **kwargs)
        self.a_bg = a_bg

    def combine(self, own: torch.Tensor, others: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        return own.clamp(min=0) - others.clamp(min=0) + background.clamp(max=0)


class MinMaxGradCAM(MinMaxCAM):
    """MinMax-Grad-CAM: MinMaxCAM with form="gradient" by default."""

    name, display_name = "minmax_gradcam", "MinMax-Grad-CAM"

    def __init__(self, form: str = "gradient", **kwargs):
        super().__init__(form=form, **kwargs)


class DMinMaxGradCAM(DMinMaxCAM):
    """D-MinMax-Grad-CAM: DMinMaxCAM with form="gradient" by default."""

    name, display_name = "d_minmax_gradcam", "D-MinMax-Grad-CAM"

    def __init__(self, form: str = "gradient", **kwargs):
        super().__init__(form=form, **kwargs)
