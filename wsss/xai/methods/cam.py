"""CAM (Zhou et al. 2016): M_c = Σ_k W_ck A_k, the classifier bias excluded (thesis eq. 17)."""
from __future__ import annotations

import torch

from wsss.xai.methods.base import CamMethod, weighted_sum
from wsss.xai.split import SplitModel


class CAM(CamMethod):
    """Class activation maps of a GAP + linear head; needs `SplitModel.from_gap_classifier`.

    For such a head Grad-CAM equals CAM / hw, so both give the same normalised map.
    """

    name, display_name = "cam", "CAM"

    def raw_maps(self, model: SplitModel, images: torch.Tensor, activations: torch.Tensor,
                 logits: torch.Tensor, targets: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        weight = model.linear_weight().to(activations.dtype)
        return weighted_sum(weight[targets.clamp(min=0)], activations)
