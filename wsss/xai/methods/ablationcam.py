"""Ablation-CAM (Desai & Ramaswamy 2020): w_ck = (y_c − y_c^{(−k)}) / y_c, with y_c^{(−k)} the score
when channel k of the explained layer is replaced by a constant; M_c = Σ_k w_ck A_k."""
from __future__ import annotations

import torch

from wsss.xai.methods.base import CamMethod, gather_scores, weighted_sum
from wsss.xai.split import SplitModel


class AblationCAM(CamMethod):
    """Ablation-CAM for all targets at once; ablations run through the head only.

    Args:
        ablation_value: what an ablated channel is set to (0.0, as pytorch-grad-cam does for
            activations whose minimum is 0, i.e. post-ReLU features).
        relative: divide the drop by y_c (the paper and pytorch-grad-cam); False keeps y_c − y_c^{(−k)}.
        closed_form: for a GAP + linear head and logit scores use y_c − y_c^{(−k)} = W_ck (Ā_k − v)
            instead of K head passes (float32 cancellation in the explicit form differs by ~1e-6).
        batch_size: ablated copies per head pass.
        **kwargs: CamMethod options (score="logit" by default).
    """

    name, display_name = "ablationcam", "Ablation-CAM"

    def __init__(self, ablation_value: float = 0.0, relative: bool = True, closed_form: bool = True,
                 batch_size: int = 256, **kwargs):
        super().__init__(**kwargs)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.ablation_value = ablation_value
        self.relative = relative
        self.closed_form = closed_form
        self.batch_size = batch_size

    @torch.no_grad()
    def ablated_scores(self, model: SplitModel, activations: torch.Tensor,
                       targets: torch.Tensor) -> torch.Tensor:
        """(B, K, L) target scores with channel k ablated, head-only passes chunked over (b, k)."""
        b, k = activations.shape[:2]
        b_idx = torch.arange(b, device=activations.device).repeat_interleave(k)
        k_idx = torch.arange(k, device=activations.device).repeat(b)
        out = activations.new_empty(b * k, targets.shape[1])
        for start in range(0, b * k, self.batch_size):
            bs, ks = b_idx[start:start + self.batch_size], k_idx[start:start + self.batch_size]
            ablated = activations[bs].clone()
            ablated[torch.arange(bs.numel(), device=bs.device), ks] = self.ablation_value
            out[start:start + bs.numel()] = gather_scores(self.scores(model.head(ablated)), targets[bs])
        return out.view(b, k, -1)

    def raw_maps(self, model: SplitModel, images: torch.Tensor, activations: torch.Tensor,
                 logits: torch.Tensor, targets: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        acts = activations.detach()
        base = gather_scores(self.scores(logits.detach()), targets)  # (B, L)
        if self.closed_form and model.has_linear_head and self.score == "logit":
            weight = model.linear_weight().to(acts.dtype)[targets.clamp(min=0)]  # (B, L, K)
            drop = weight * (acts.mean(dim=(2, 3)) - self.ablation_value)[:, None, :]
        else:
            drop = base[..., None] - self.ablated_scores(model, acts, targets).transpose(1, 2)
        if self.relative:
            drop = drop / base[..., None]
        return weighted_sum(drop, acts)
