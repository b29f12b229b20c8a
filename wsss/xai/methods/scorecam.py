"""Score-CAM (Wang et al. 2020): channel weights from the class scores of activation-masked inputs.

Each channel k of image b gives a mask N_bk = normalize(upsample(A_bk)); one forward of x_b ⊙ N_bk
yields the scores of *every* class, so all labels cost the same K forwards as one label.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from wsss.xai.methods.base import CamMethod, Resolution, gather_scores, minmax_normalize, weighted_sum
from wsss.xai.split import SplitModel


class ScoreCAM(CamMethod):
    """Score-CAM for all targets from one set of masked forwards, chunked over (image, channel).

    Defaults follow the MinMax-paper notebooks (`sigmoid_scorecam`): M_c = Σ_k σ(s_c(x ⊙ N_k)) · up(A_k)
    summed at input resolution, then ReLU and min-max there (`resolution="input", resize_before_relu=True`).
    `ScoreCAM.pytorch_grad_cam()` gives pytorch-grad-cam's ScoreCAM (align_corners=True, mask_eps=1e-8,
    logit scores, softmax over channels, sum at feature resolution, its normalisation).

    Normalisation: the thesis prints the masks N_k and the maps as A / max A; the code of the papers (the
    notebooks, pytorch-grad-cam, and ours) min-max normalises them, (A − min A) / (max A − min A). We follow
    the code. The two agree for maps whose minimum is 0 (post-ReLU maps that vanish somewhere).

    Args:
        batch_size: masked images per forward.
        align_corners: of the mask upsampling to the input size (pytorch-grad-cam: True).
        mask_eps: added to the max − min of each upsampled channel (pytorch-grad-cam: 1e-8);
            0.0 divides exactly with 0/0 := 0.
        softmax: weights = softmax over channels of the scores (pytorch-grad-cam) instead of the
            scores themselves (paper).
        skip_constant: channels constant over space get weight 0 and no forward (the paper's loop
            stops at the first constant channel).
        max_channels: keep only the N channels of largest spatial std per image (None = all, the paper).
        score: "probability" (paper: σ(s_c), the bias included) or "logit" (pytorch-grad-cam).
        resolution, resize_before_relu: as CamMethod, defaults "input" and True (the notebooks'
            path; `resolution="feature", resize_before_relu=False` sums at feature resolution, which
            differs from it by the ReLU taken before the upsampling, about 2e-3 on a trained net).
        **kwargs: other CamMethod options.
    """

    name, display_name = "scorecam", "Score-CAM"

    def __init__(self, batch_size: int = 64, align_corners: bool = False, mask_eps: float = 0.0,
                 softmax: bool = False, skip_constant: bool = True, max_channels: int | None = None,
                 score: str = "probability", resolution: Resolution = "input", resize_before_relu: bool = True,
                 **kwargs):
        super().__init__(score=score, resolution=resolution, resize_before_relu=resize_before_relu, **kwargs)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if max_channels is not None and max_channels < 1:
            raise ValueError(f"max_channels={max_channels} must be >= 1 or None")
        self.batch_size = batch_size
        self.mask_align_corners = align_corners
        self.mask_eps = mask_eps
        self.softmax = softmax
        self.skip_constant = skip_constant
        self.max_channels = max_channels

    @classmethod
    def pytorch_grad_cam(cls, **kwargs) -> "ScoreCAM":
        """pytorch-grad-cam's ScoreCAM conventions (maps at input size, its post-processing)."""
        options = dict(align_corners=True, mask_eps=1e-8, score="logit", softmax=True, skip_constant=False,
                       normalize="minmax_pgc", resolution="input", resize_before_relu=False)
        return cls(**{**options, **kwargs})

    def channels_to_score(self, activations: torch.Tensor) -> torch.Tensor:
        """(B, K) bool: which channels get a masked forward."""
        std = activations.flatten(2).std(dim=2, unbiased=False)
        keep = torch.ones_like(std, dtype=torch.bool)
        if self.max_channels is not None and self.max_channels < std.shape[1]:
            top = std.topk(self.max_channels, dim=1).indices
            keep = torch.zeros_like(keep).scatter_(1, top, True)
        if self.skip_constant:
            flat = activations.flatten(2)
            keep &= flat.amax(dim=2) > flat.amin(dim=2)
        return keep

    def masks(self, channel_maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(N, h, w) activations -> (N, 1, H, W) masks in [0, 1]."""
        up = F.interpolate(channel_maps[:, None], size=size, mode="bilinear",
                           align_corners=self.mask_align_corners)
        return minmax_normalize(up, self.mask_eps)

    @torch.no_grad()
    def masked_scores(self, model: SplitModel, images: torch.Tensor, activations: torch.Tensor,
                      keep: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Z (B, K, L): score of each target for x_b ⊙ N_bk; 0 where channel k is not kept."""
        b_idx, k_idx = keep.nonzero(as_tuple=True)
        out = activations.new_zeros(*keep.shape, targets.shape[1])
        for start in range(0, b_idx.numel(), self.batch_size):
            bs, ks = b_idx[start:start + self.batch_size], k_idx[start:start + self.batch_size]
            masks = self.masks(activations[bs, ks], tuple(images.shape[-2:]))
            logits = model(self.memory_format(images[bs] * masks.to(images.dtype)))
            out[bs, ks] = gather_scores(self.scores(logits), targets[bs])
        return out

    def raw_maps(self, model: SplitModel, images: torch.Tensor, activations: torch.Tensor,
                 logits: torch.Tensor, targets: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        acts = activations.detach()
        keep = self.channels_to_score(acts)
        scores = self.masked_scores(model, images, acts, keep, targets)  # (B, K, L)
        if self.softmax:
            scores = scores.masked_fill(~keep[..., None], float("-inf")).softmax(dim=1)
            scores = scores.nan_to_num(0.0)  # images with no kept channel
        else:
            scores = scores * keep[..., None]
        return weighted_sum(scores.transpose(1, 2), acts)
