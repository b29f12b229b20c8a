"""LayerCAM (Jiang et al. 2021): M_c = Σ_k relu(∂y_c/∂A_k) ⊙ A_k, a per-position gradient weight."""
from __future__ import annotations

import torch

from wsss.xai.methods.base import CamMethod, elementwise_sum
from wsss.xai.split import SplitModel


class LayerCAM(CamMethod):
    """LayerCAM for all targets at once. For a GAP + linear head it reduces to Σ_k relu(W_ck) A_k / hw."""

    name, display_name = "layercam", "LayerCAM"

    uses_gradients = True

    def raw_maps(self, model: SplitModel, images: torch.Tensor, activations: torch.Tensor,
                 logits: torch.Tensor, targets: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        grads = self.target_gradients(model, activations, logits, targets)
        return elementwise_sum(grads.clamp(min=0), activations.detach())
