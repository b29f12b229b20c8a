"""Affinity loss: hand-computed values (jiwoon-ahn/irn@a2ece00:step/train_irn.py)."""
import math

import pytest
import torch

from wsss.losses.affinity import affinity_loss


def test_half_affinity_gives_log_two_everywhere():
    a = torch.full((2, 3, 4), 0.5)
    masks = torch.zeros(3, 2, 3, 4, dtype=torch.bool)
    masks[0, :, 0] = masks[1, :, 1] = masks[2, :, 2] = True
    out = affinity_loss(a, *masks)
    for term in out:
        assert float(term) == pytest.approx(0.6931272, abs=1e-6)


def test_hand_computed_example():
    a = torch.tensor([[0.9, 0.5, 0.2, 0.8, 0.3]])
    bg = torch.tensor([[1, 0, 0, 0, 0]], dtype=torch.bool)
    fg = torch.tensor([[0, 1, 0, 0, 1]], dtype=torch.bool)
    neg = torch.tensor([[0, 0, 1, 1, 0]], dtype=torch.bool)
    eps = 1e-5
    l_bg = -math.log(0.9 + eps) / (1 + eps)
    l_fg = (-math.log(0.5 + eps) - math.log(0.3 + eps)) / (2 + eps)
    l_neg = (-math.log(1 + eps - 0.2) - math.log(1 + eps - 0.8)) / (2 + eps)
    out = affinity_loss(a, bg, fg, neg)
    assert float(out.bg) == pytest.approx(l_bg, rel=1e-6)
    assert float(out.fg) == pytest.approx(l_fg, rel=1e-6)
    assert float(out.neg) == pytest.approx(l_neg, rel=1e-6)
    assert float(out.total) == pytest.approx(l_bg / 4 + l_fg / 4 + l_neg / 2, rel=1e-6)


def test_empty_term_is_zero_and_gradients_flow():
    a = torch.tensor([0.6, 0.4], requires_grad=True)
    none = torch.zeros(2, dtype=torch.bool)
    out = affinity_loss(a, torch.tensor([True, False]), none, torch.tensor([False, True]))
    assert float(out.fg.detach()) == 0.0
    out.total.backward()
    assert a.grad[0] < 0 < a.grad[1]   # pull the positive pair up, push the negative one down


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="fg_pos"):
        affinity_loss(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool),
                      torch.zeros(2, 3, dtype=torch.bool))
