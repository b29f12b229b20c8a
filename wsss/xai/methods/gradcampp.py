"""Grad-CAM++ (Chattopadhay et al. 2018, their eq. 19, exponential-output closed form).

α_kij = G² / (2 G² + E_k G³ + eps), with G = ∂y_c/∂A_kij and E_k = Σ_ij A_kij,
w_ck = Σ_ij relu(G) α_kij,  M_c = Σ_k w_ck A_k;  α := 0 where G = 0 or the denominator is 0.
"""
from __future__ import annotations

import torch

from wsss.xai.methods.base import CamMethod, spatial_sum, weighted_sum
from wsss.xai.split import SplitModel

ENERGIES = ("sum", "mean")


class GradCAMPlusPlus(CamMethod):
    """Grad-CAM++ for all targets at once.

    Args:
        eps: added to the α denominator. 0.0 (default) is the MinMax-paper code's exact division
            (0/0 := 0); pytorch-grad-cam always adds 1e-6, which for a GAP head acts like
            eps·(hw)² next to 2W² and changes maps visibly.
        energy: "sum" (paper, pytorch-grad-cam: E_k = Σ_ij A_kij) or "mean" (Xplique's variant).
        **kwargs: CamMethod options.
    """

    name, display_name = "gradcampp", "Grad-CAM++"

    uses_gradients = True

    def __init__(self, eps: float = 0.0, energy: str = "sum", **kwargs):
        super().__init__(**kwargs)
        if energy not in ENERGIES:
            raise ValueError(f"energy={energy!r}; expected one of {ENERGIES}")
        if eps < 0:
            raise ValueError(f"eps={eps} must be >= 0")
        self.eps = eps
        self.energy = energy

    def raw_maps(self, model: SplitModel, images: torch.Tensor, activations: torch.Tensor,
                 logits: torch.Tensor, targets: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        acts = activations.detach()
        grads = self.target_gradients(model, activations, logits, targets)
        h, w = acts.shape[-2:]
        energy = acts.sum(dim=(2, 3)) if self.energy == "sum" else acts.mean(dim=(2, 3))
        g2 = grads.pow(2)
        denom = 2 * g2 + energy[:, None, :, None, None] * g2 * grads + self.eps
        valid = (grads != 0) & (denom != 0)
        safe = torch.where(valid, denom, torch.ones_like(denom))
        alpha = torch.where(valid, g2 / safe, torch.zeros_like(g2))
        weights = spatial_sum(grads.clamp(min=0) * alpha, h * w)
        return weighted_sum(weights, acts)
