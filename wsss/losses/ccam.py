"""C²AM contrastive losses (thesis Eq. 7) and the C²AM-H hint term (thesis Eq. 29).

With v_f, v_b the (B, C) foreground / background vectors of a batch (`wsss.models.ccam`) and
s(a, b) = clamp(â·b̂ᵀ, 0.0005, 0.9995) the clamped cosine-similarity matrix of L2-normalised rows:

* L_pos-f = SimMax(v_f), L_pos-b = SimMax(v_b): weighted −log s over pairs of the batch, with rank
  weights w_ij = exp(−α·rank_ij) (α = 0.25), rank_ij the 0-based position of s_ij in row i sorted by
  descending similarity, counted *without* the image itself (nearest neighbour weight 1, next e^{−α}…).
* L_neg = SimMin(v_b, v_f) = mean_ij −log(1 − s(v_b,i, v_f,j)) over all n² pairs.

Two forms of the positive terms, selected by `include_self`:

* include_self=True (default; the reference code CVI-SZU/CCAM@e6a46c9:WSSS/core/loss.py and P-NOC):
  the diagonal is ranked with the rest (rank 0 for itself ⇒ weight e^{α}) and the sum is divided by n².
* include_self=False (Eq. 7 as printed): only i ≠ j, divided by n(n − 1).

The diagonal term is the constant −log 0.9995·e^{α} (the clamp cuts its gradient), so the two forms
have the same minimiser and differ by a constant and a factor n/(n − 1) on the gradient.

Hint loss (Eq. 29, P-NOC `train_hints.py`): hints are the max over classes of the image's CAMs
(`hint_map`), resized to the logit grid (bicubic); positions with hint > δ_fg (0.4) get
BCE-with-logits towards 1 − ε/2 (label smoothing ε, 0.1 in the P-NOC runner); averaged over the
hinted positions of the batch (0 when there are none, where upstream returns NaN). Optional
background hints (hint < δ_bg, target ε/2) exist upstream only as commented-out code: off by default.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

SIM_MIN, SIM_MAX = 0.0005, 0.9995


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """s_ij = clamp(cos(a_i, b_j), 0.0005, 0.9995) for a (N, C) and b (M, C)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two (N, C) feature matrices; got {tuple(a.shape)} and {tuple(b.shape)}")
    sim = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    return sim.clamp(SIM_MIN, SIM_MAX)


def descending_ranks(sim: torch.Tensor) -> torch.Tensor:
    """rank_ij: 0-based position of s_ij in row i sorted by descending value (ties: lower j first)."""
    order = torch.argsort(sim, dim=1, descending=True, stable=True)
    return torch.argsort(order, dim=1, stable=True)


def rank_weights(sim: torch.Tensor, alpha: float = 0.25, include_self: bool = True) -> torch.Tensor:
    """Rank weights exp(−α·rank) of a square similarity matrix, rank counted without the image itself.

    include_self=True: the reference's exp(−α·(r − 1)) with r ranked over the whole row (self is
    normally r = 0 ⇒ e^{α}). include_self=False: the diagonal is ranked first, off-diagonal entries get
    exp(−α·rank among the others) and the diagonal weight is 0.
    """
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"rank weights need a square similarity matrix; got {tuple(sim.shape)}")
    eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    if include_self:
        return torch.exp(-alpha * (descending_ranks(sim) - 1).to(sim.dtype))
    ranks = descending_ranks(sim.detach().masked_fill(eye, float("inf")))
    return torch.exp(-alpha * (ranks - 1).to(sim.dtype)).masked_fill(eye, 0.0)


def sim_max(features: torch.Tensor, alpha: float = 0.25, include_self: bool = True) -> torch.Tensor:
    """Positive term of Eq. 7: rank-weighted mean of −log s(f_i, f_j) over the batch."""
    sim = cosine_similarity_matrix(features, features)
    weights = rank_weights(sim.detach(), alpha, include_self)
    n = sim.shape[0]
    pairs = n * n if include_self else n * (n - 1)
    if pairs == 0:
        raise ValueError("the C²AM positive term needs at least 2 images per batch when include_self=False")
    return (weights * -torch.log(sim)).sum() / pairs


def sim_min(bg: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """Negative term of Eq. 7: mean over all n² pairs of −log(1 − s(bg_i, fg_j))."""
    return -torch.log(1 - cosine_similarity_matrix(bg, fg)).mean()


class ContrastiveTerms(NamedTuple):
    pos_fg: torch.Tensor
    pos_bg: torch.Tensor
    neg: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.pos_fg + self.pos_bg + self.neg


def contrastive_terms(fg: torch.Tensor, bg: torch.Tensor, alpha: float = 0.25,
                      include_self: bool = True) -> ContrastiveTerms:
    """The three terms of Eq. 7 for the (B, C) foreground and background vectors of a batch."""
    return ContrastiveTerms(sim_max(fg, alpha, include_self), sim_max(bg, alpha, include_self),
                            sim_min(bg, fg))


def hint_map(cams: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Hints (B, 1, h, w): max over classes of CAMs (B, K, H, W) or (B, H, W), resized to `size`.

    Bicubic (the reference, for npy CAMs) may overshoot [0, 1] slightly; use mode="nearest" for PNG
    label hints.
    """
    if cams.ndim == 3:
        cams = cams[:, None]
    if cams.ndim != 4:
        raise ValueError(f"cams must have shape (B, K, H, W) or (B, H, W); got {tuple(cams.shape)}")
    hints = cams.amax(dim=1, keepdim=True)
    if hints.shape[-2:] == tuple(size):
        return hints
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(hints.float(), size=tuple(size), mode=mode, **kwargs)


def hint_loss(logits: torch.Tensor, hints: torch.Tensor, delta_fg: float = 0.4, delta_bg: float | None = None,
              label_smoothing: float = 0.1) -> torch.Tensor:
    """C²AM-H hint term (Eq. 29, without λ_h): mean BCE-with-logits over hinted positions.

    logits, hints: (B, 1, h, w). Foreground hints: hint > delta_fg, target 1 − ε/2. Background hints
    (only when delta_bg is given): hint < delta_bg, target ε/2. Returns 0 (with a graph) when no
    position is hinted.
    """
    if logits.shape != hints.shape:
        raise ValueError(f"hints of shape {tuple(hints.shape)} must match logits of shape "
                         f"{tuple(logits.shape)}; "
                         "resize them with hint_map(cams, logits.shape[-2:])")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1)")
    fg_mask = hints > delta_fg
    target = torch.full_like(logits, 1 - label_smoothing / 2)
    mask = fg_mask
    if delta_bg is not None:
        if delta_bg > delta_fg:
            raise ValueError(f"delta_bg={delta_bg} must not exceed delta_fg={delta_fg}")
        bg_mask = hints < delta_bg
        target = torch.where(bg_mask, torch.full_like(logits, label_smoothing / 2), target)
        mask = fg_mask | bg_mask
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (bce * mask).sum() / mask.sum().clamp(min=1)


class CCAMLoss(nn.Module):
    """C²AM (Eq. 7) and, when hints are passed, C²AM-H (Eq. 29) loss with the paper's defaults.

    forward(fg, bg, logits=None, hints=None) returns a dict with "pos_fg", "pos_bg", "neg",
    "hint" (0 without hints) and "loss" = pos_fg + pos_bg + neg + lambda_h·hint.
    """

    def __init__(self, alpha: float = 0.25, include_self: bool = True, lambda_h: float = 1.0,
                 delta_fg: float = 0.4, delta_bg: float | None = None, label_smoothing: float = 0.1):
        super().__init__()
        self.alpha = alpha
        self.include_self = include_self
        self.lambda_h = lambda_h
        self.delta_fg = delta_fg
        self.delta_bg = delta_bg
        self.label_smoothing = label_smoothing

    def forward(self, fg: torch.Tensor, bg: torch.Tensor, logits: torch.Tensor | None = None,
                hints: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        terms = contrastive_terms(fg, bg, self.alpha, self.include_self)
        out = terms._asdict()
        if hints is None:
            out["hint"] = torch.zeros((), dtype=fg.dtype, device=fg.device)
        else:
            if logits is None:
                raise ValueError("CCAMLoss: hints were given without the logit map")
            out["hint"] = hint_loss(logits, hints, self.delta_fg, self.delta_bg, self.label_smoothing)
        out["loss"] = terms.total + self.lambda_h * out["hint"]
        return out
