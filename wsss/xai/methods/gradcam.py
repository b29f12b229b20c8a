"""Grad-CAM (Selvaraju et al. 2017): w_ck = mean_ij ∂y_c/∂A_kij, M_c = Σ_k w_ck A_k."""
from __future__ import annotations

import torch

from wsss.xai.methods.base import CamMethod, spatial_sum, weighted_sum
from wsss.xai.split import SplitModel


class GradCAM(CamMethod):
    """Grad-CAM for all targets from one body forward and one head-only backward.

    `score="logit"` (default, as pytorch-grad-cam's ClassifierOutputTarget) differentiates s_c;
    "probability" differentiates σ(s_c), which only rescales each map by σ'(s_c) > 0.
    """

    name, display_name = "gradcam", "Grad-CAM"

    uses_gradients = True

    def raw_maps(self, model: SplitModel, images: torch.Tensor, activations: torch.Tensor,
                 logits: torch.Tensor, targets: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        grads = self.target_gradients(model, activations, logits, targets)
        h, w = activations.shape[-2:]
        weights = spatial_sum(grads, h * w) / (h * w)
        return weighted_sum(weights, activations.detach())
