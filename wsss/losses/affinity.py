"""Affinity loss of AffinityNet / IRN on labelled pixel pairs
(lucasdavid/PNOC@f250e0d:scripts/rw/train_affinity.py, jiwoon-ahn/irn@a2ece00:step/train_irn.py).

With predicted affinities a ∈ [0, 1] and boolean pair masks (bg-pos, fg-pos, neg):

    L_bg  = Σ bg_pos · −log(a + ε)     / (Σ bg_pos + ε)
    L_fg  = Σ fg_pos · −log(a + ε)     / (Σ fg_pos + ε)
    L_neg = Σ neg    · −log(1 + ε − a) / (Σ neg + ε)
    L     = ((L_bg + L_fg) / 2 + L_neg) / 2          (= L_bg/4 + L_fg/4 + L_neg/2, PSA's form)

Sums run over the whole batch (every pair of every image), as upstream. An empty mask gives a zero term.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

EPS = 1e-5


class AffinityLoss(NamedTuple):
    total: torch.Tensor
    bg: torch.Tensor
    fg: torch.Tensor
    neg: torch.Tensor


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, eps: float) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / (mask.sum() + eps)


def affinity_loss(affinities: torch.Tensor, bg_pos: torch.Tensor, fg_pos: torch.Tensor, neg: torch.Tensor,
                  eps: float = EPS) -> AffinityLoss:
    """The three affinity terms and their combination; all masks have the shape of `affinities`.

    Computed in float32 even under autocast (log of values near 0 and 1).
    """
    for name, mask in (("bg_pos", bg_pos), ("fg_pos", fg_pos), ("neg", neg)):
        if mask.shape != affinities.shape:
            raise ValueError(f"{name} has shape {tuple(mask.shape)}; expected the affinities' shape "
                             f"{tuple(affinities.shape)}")
    a = affinities.float()
    pos_nll = -torch.log(a + eps)
    neg_nll = -torch.log(1.0 + eps - a)
    bg = _masked_mean(pos_nll, bg_pos, eps)
    fg = _masked_mean(pos_nll, fg_pos, eps)
    ng = _masked_mean(neg_nll, neg, eps)
    return AffinityLoss(total=((bg + fg) / 2 + ng) / 2, bg=bg, fg=fg, neg=ng)
