"""What every CAM method shares: target parsing, one body forward, head gradients, post-processing.

A method maps `(model, images, targets)` to maps (B, L, h, w), one per requested label, all labels
of an image from the same body forward. Raw maps are computed at feature resolution; the
conventions on which libraries differ (ReLU, normalisation, output resolution, logit vs sigmoid
score) are constructor options of `CamMethod`, defaults following the MinMax-CAM paper's code.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from wsss.xai.split import SplitModel, as_split_model

Targets = Union[torch.Tensor, Sequence[Sequence[int]], None]
Resolution = Union[str, tuple[int, int]]

NORMALIZATIONS = ("minmax", "minmax_pgc", "none")
SCORES = ("logit", "probability")
PGC_EPS = 1e-7  # pytorch-grad-cam's absolute eps in scale_cam_image


@dataclass
class CamResult:
    """maps (B, L, h', w') for targets (B, L) (-1 = padding, zero map); logits (B, C) of the images."""
    maps: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor


def parse_targets(targets: Targets, batch_size: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """Targets as a (B, L) long tensor, -1 marking padding.

    Accepts None (all classes), a (B, L) integer tensor, or one sequence of class ids per image
    (ragged lists are padded with -1). Unlike pytorch-grad-cam, a list whose length differs from
    the batch is an error rather than silently truncated.
    """
    if targets is None:
        return torch.arange(num_classes, device=device).expand(batch_size, num_classes)
    if isinstance(targets, torch.Tensor):
        if targets.dim() == 1:
            targets = targets[:, None]
        if targets.dim() != 2 or targets.dtype in (torch.float16, torch.float32, torch.float64, torch.bool):
            raise ValueError(f"targets tensor has shape {tuple(targets.shape)} and dtype {targets.dtype}; "
                             "expected class indices (B, L) of an integer dtype")
        out = targets.to(device=device, dtype=torch.long)
    else:
        rows = [list(map(int, t)) for t in targets]
        width = max((len(r) for r in rows), default=0)
        out = torch.full((len(rows), width), -1, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        out = out.to(device)
    if out.shape[0] != batch_size:
        raise ValueError(f"got targets for {out.shape[0]} images but the batch has {batch_size}; "
                         "give one row of class ids per image")
    if out.numel() and (out.max() >= num_classes or out.min() < -1):
        raise ValueError(f"target class ids must lie in [0, {num_classes}) (or -1 for padding); "
                         f"got values in [{int(out.min())}, {int(out.max())}]")
    return out


def high_precision(tensor: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32 (CAM algebra such as G³ underflows in half precision); float64 kept."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def one_hot_coefficients(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, L) targets -> (B, L, C) one-hot rows (all zero for padding)."""
    coef = F.one_hot(targets.clamp(min=0), num_classes).float()
    return coef * (targets >= 0)[..., None]


def gather_scores(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """scores (B, C), targets (B, L) -> (B, L); padding reads class 0 (masked later)."""
    return scores.gather(1, targets.clamp(min=0))


def minmax_normalize(maps: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Per-map `(M − min) / (max(M − min) + eps)` over the last two dims; 0/0 := 0 when eps = 0."""
    shifted = maps - maps.amin(dim=(-2, -1), keepdim=True)
    peak = shifted.amax(dim=(-2, -1), keepdim=True) + eps
    safe = torch.where(peak > 0, peak, torch.ones_like(peak))
    return torch.where(peak > 0, shifted / safe, torch.zeros_like(maps))


def resize_maps(maps: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of (..., h, w) maps to `size` (equals cv2 INTER_LINEAR for align_corners=False)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=align_corners)
    return out.reshape(*lead, *size)


def postprocess(maps: torch.Tensor, size: tuple[int, int] | None = None, relu: bool = True,
                normalize: str = "minmax", align_corners: bool = False,
                resize_before_relu: bool = False) -> torch.Tensor:
    """ReLU → per-map min-max → bilinear resize (paper order, thesis §A.1.3).

    normalize: "minmax" (0/0 := 0), "none", or "minmax_pgc", which emulates pytorch-grad-cam
    exactly: eps 1e-7 in the denominator and a second normalisation after the resize.
    resize_before_relu: resize the raw map first (the MinMax notebooks' Score-CAM sums at input
    resolution and applies ReLU there).
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize={normalize!r}; expected one of {NORMALIZATIONS}")
    if size is not None and resize_before_relu:
        maps = resize_maps(maps, size, align_corners)
    if relu:
        maps = maps.clamp(min=0)
    if normalize != "none":
        maps = minmax_normalize(maps, PGC_EPS if normalize == "minmax_pgc" else 0.0)
    if size is not None and not resize_before_relu:
        maps = resize_maps(maps, size, align_corners)
        if normalize == "minmax_pgc":
            maps = minmax_normalize(maps, PGC_EPS)
    return maps


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Σ_k w_blk A_bk: weights (B, L, K), activations (B, K, h, w) -> (B, L, h, w)."""
    return torch.einsum("blk,bkhw->blhw", weights, activations)


def spatial_sum(values: torch.Tensor, spatial_size: int) -> torch.Tensor:
    """Σ_ij of (B, L, K, h, w) values; (…, 1, 1) values stand for a constant map of `spatial_size` pixels."""
    if values.shape[-2:] == (1, 1):
        return values[..., 0, 0] * spatial_size
    return values.sum(dim=(-2, -1))


def elementwise_sum(values: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Σ_k V_blk ⊙ A_bk for V (B, L, K, h, w) or (B, L, K, 1, 1) -> (B, L, h, w)."""
    if values.shape[-2:] == (1, 1):
        return weighted_sum(values[..., 0, 0], activations)
    return torch.einsum("blkhw,bkhw->blhw", values, activations)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Run in eval mode (BatchNorm in train mode would couple the samples), then restore every
    submodule's own mode (a wrapper's flag need not match its children's)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


class CamMethod:
    """Base of all methods.

    Args:
        relu: clamp the map at 0 before normalising (all anchors do; torchcam's CAM does not).
        normalize: "minmax" (paper, 0/0 := 0), "minmax_pgc" (pytorch-grad-cam) or "none" (raw maps).
        resolution: "feature" (h, w of A), "input" (H, W of the images) or an explicit (H, W).
        align_corners: of the bilinear output resize.
        resize_before_relu: resize the raw map before ReLU/normalisation (only with a resize).
        score: "logit" (s_c) or "probability" (σ(s_c), multi-label sigmoid), for methods that
            weight by or differentiate a class score.
        channels_last: feed the body channels-last inputs (about 25% faster for ResNets on CPU and
            with bf16 on GPU; slower for some nets such as ResNeSt). Changes nothing but speed.

    A subclass with a `name` is a method of the registry (`wsss.xai.methods.REGISTRY`, `stage.methods`), found
    in its own module of this package: `display_name` heads its column in the tables and figures.
    """

    name: str = ""
    display_name: str = ""
    uses_gradients = False

    def __init__(self, relu: bool = True, normalize: str = "minmax", resolution: Resolution = "feature",
                 align_corners: bool = False, resize_before_relu: bool = False, score: str = "logit",
                 channels_last: bool = False):
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize={normalize!r}; expected one of {NORMALIZATIONS}")
        if score not in SCORES:
            raise ValueError(f"score={score!r}; expected one of {SCORES}")
        if not (resolution in ("feature", "input") or (isinstance(resolution, (tuple, list))
                                                      and len(resolution) == 2)):
            raise ValueError(f"resolution={resolution!r}; expected 'feature', 'input' or (H, W)")
        self.relu = relu
        self.normalize = normalize
        self.resolution = resolution
        self.align_corners = align_corners
        self.resize_before_relu = resize_before_relu
        self.score = score
        self.channels_last = channels_last

    def __call__(self, model: SplitModel, images: torch.Tensor, targets: Targets = None,
                 context: torch.Tensor | None = None) -> torch.Tensor:
        """Maps (B, L, h', w') of every requested label; see `compute`."""
        return self.compute(model, images, targets, context).maps

    def compute(self, model: SplitModel, images: torch.Tensor, targets: Targets = None,
                context: torch.Tensor | None = None) -> CamResult:
        """Explain all `targets` of each image with one body forward.

        Args:
            model: a SplitModel (or a (body, head) pair).
            images: (B, 3, H, W) preprocessed inputs.
            targets: (B, L) class ids (-1 = padding), one id list per image, or None for all classes.
            context: optional (B, C) bool label sets for contrastive methods (MinMax-CAM); by default
                they use the detections σ(s) > threshold. Other methods ignore it.
        """
        model = as_split_model(model)
        need_graph = self.uses_gradients and not model.has_linear_head
        with eval_mode(model), torch.inference_mode(False), torch.set_grad_enabled(need_graph):
            activations, logits = self._forward(model, images, need_graph)
            targets = parse_targets(targets, images.shape[0], logits.shape[1], images.device)
            raw = self.raw_maps(model, images, activations, logits, targets, context).detach()
        raw = high_precision(raw) * (targets >= 0)[..., None, None]
        size = self._output_size(images, raw)
        maps = postprocess(raw, size, self.relu, self.normalize, self.align_corners, self.resize_before_relu)
        return CamResult(maps=maps, logits=high_precision(logits.detach()), targets=targets)

    def _forward(self, model: SplitModel, images: torch.Tensor,
                 need_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One body forward without graph; A becomes a leaf so that gradients stop at the head."""
        with torch.no_grad():
            activations = high_precision(model.features(self.memory_format(images)))
        activations = activations.detach().requires_grad_(need_graph)
        return activations, model.head(activations)

    def memory_format(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def _output_size(self, images: torch.Tensor, raw: torch.Tensor) -> tuple[int, int] | None:
        if self.resolution == "feature":
            return None
        if self.resolution == "input":
            return tuple(images.shape[-2:])
        return tuple(int(s) for s in self.resolution)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Class scores used for weighting: logits or sigmoid probabilities, in float32."""
        logits = high_precision(logits)
        return torch.sigmoid(logits) if self.score == "probability" else logits

    def target_gradients(self, model: SplitModel, activations: torch.Tensor, logits: torch.Tensor,
                         targets: torch.Tensor) -> torch.Tensor:
        """G (B, L, K, h, w) or (B, L, K, 1, 1): ∂score_{b, t_bl}/∂A_b through the head only."""
        coef = one_hot_coefficients(targets, logits.shape[1]).to(activations)
        if self.score == "probability":  # ∂σ(s_c) = σ'(s_c) ∂s_c
            p = torch.sigmoid(high_precision(logits.detach())).to(activations)
            coef = coef * (p * (1 - p))[:, None, :]
        return model.score_gradients(activations, coef, logits).to(activations.dtype)

    def raw_maps(self, model: SplitModel, images: torch.Tensor, activations: torch.Tensor,
                 logits: torch.Tensor, targets: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """Unprocessed maps (B, L, h, w) at feature resolution."""
        raise NotImplementedError
