"""C²AM / C²AM-H network, contrastive losses (Eq. 7), hint loss (Eq. 29) and polarity rules."""
from __future__ import annotations

import math

import pytest
import torch

from wsss.losses.ccam import (CCAMLoss, contrastive_terms, cosine_similarity_matrix, descending_ranks,
                              hint_loss, hint_map, rank_weights, sim_max, sim_min)
from wsss.models.backbone import Backbone
from wsss.models.ccam import CCAM, border_mean, foreground_is_flipped, partition_pool

ALPHA = 0.25
LOG2 = math.log(2)


def build(output_stride: int = 16) -> CCAM:
    torch.manual_seed(0)
    return CCAM(Backbone("resnet18", pretrained=False, output_stride=output_stride))


# --- network -----------------------------------------------------------------------------------

@pytest.mark.parametrize("output_stride", [16, 32])
def test_network_shapes_concat_last_two_stages(output_stride):
    model = build(output_stride).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        stages = model.backbone(x)
        features = model.features(x)
    assert model.feature_channels == 256 + 512  # layer3 ⊕ layer4 of ResNet-18
    assert out.logits.shape == (2, 1, 4, 4)  # stride 16 (layer3's grid, layer4 resized at OS32)
    assert out.fg.shape == out.bg.shape == (2, 768)
    assert features.shape == (2, 768, 4, 4)
    assert torch.equal(features[:, :256], stages[-2])
    if output_stride == 16:
        assert torch.equal(features[:, 256:], stages[-1])  # same stride: no resizing
    else:
        assert stages[-1].shape[-1] == 2


def test_pooling_identity_fg_plus_bg_is_mean_feature():
    model = build().eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        mean = model.features(x).mean(dim=(2, 3))
    torch.testing.assert_close(out.fg + out.bg, mean, rtol=1e-5, atol=1e-6)  # C²AM's pooling identity


def test_partition_pool_by_hand():
    x = torch.arange(8.0).view(1, 2, 2, 2)  # channel 0: 0..3, channel 1: 4..7
    p = torch.tensor([1.0, 0.0, 0.5, 0.0]).view(1, 1, 2, 2)
    fg, bg = partition_pool(x, p)
    torch.testing.assert_close(fg, torch.tensor([[(0 + 1) / 4, (4 + 3) / 4]]))
    torch.testing.assert_close(bg, torch.tensor([[(1 + 1 + 3) / 4, (5 + 3 + 7) / 4]]))
    with pytest.raises(ValueError, match="do not match"):
        partition_pool(x, p[:, :, :1])


def test_head_is_conv3x3_then_batchnorm_and_gradients_flow():
    model = build().train()
    conv = model.disentangler.conv
    assert conv.kernel_size == (3, 3) and conv.bias is None and conv.out_channels == 1
    assert isinstance(model.disentangler.norm, torch.nn.BatchNorm2d)
    assert [m for m in model.new_modules()] == [model.disentangler]
    out = model(torch.randn(4, 3, 64, 64))
    CCAMLoss()(out.fg, out.bg)["loss"].backward()
    assert conv.weight.grad.abs().sum() > 0
    assert model.backbone.body.conv1.weight.grad.abs().sum() > 0


def test_flipped_buffer_orients_logits_and_is_saved():
    model = build()
    s = torch.tensor([[[[1.0, -2.0]]]])
    assert torch.equal(model.foreground_logits(s), s)
    model.flipped.fill_(True)
    assert torch.equal(model.foreground_logits(s), -s)
    assert model.state_dict()["flipped"].item() is True


# --- contrastive terms (Eq. 7) -------------------------------------------------------------------

FG2 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
BG2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
COS45 = math.sqrt(0.5)


def test_sim_max_two_images_by_hand():
    # s = [[.9995, cos45], [cos45, .9995]]; self rank 0 -> weight e^α, the other rank 1 -> weight 1.
    diag = -math.log(0.9995) * math.exp(ALPHA)
    off = -math.log(COS45)
    assert sim_max(FG2, ALPHA).item() == pytest.approx((2 * diag + 2 * off) / 4, rel=1e-5)
    assert sim_max(FG2, ALPHA, include_self=False).item() == pytest.approx(off, rel=1e-5)


def test_sim_min_two_images_by_hand():
    # s(bg_i, fg_j): (0,1)·(1,0) = 0 -> .0005; (0,1)·(1,1)/√2 = cos45; (1,0)·(1,0) = 1 -> .9995.
    expected = -(math.log(1 - 0.0005) + math.log(1 - COS45) + math.log(1 - 0.9995) + math.log(1 - COS45)) / 4
    assert sim_min(BG2, FG2).item() == pytest.approx(expected, rel=1e-5)


def test_reference_values_c1():
    fg = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 1]])
    bg = torch.tensor([[0.0, 1, 0], [0, 1, 1], [1, 0, 0]])
    terms = contrastive_terms(fg, bg, ALPHA)
    assert terms.pos_fg.item() == pytest.approx(2.894972, rel=1e-5)
    assert terms.neg.item() == pytest.approx(1.331094, rel=1e-5)
    assert terms.pos_bg.item() == pytest.approx(2.894972, rel=1e-5)
    assert terms.total.item() == pytest.approx(7.121037, rel=1e-5)


def test_rank_weights_by_hand():
    sim = torch.tensor([[0.9, 0.2, 0.5, 0.7],
                        [0.3, 0.95, 0.6, 0.1],
                        [0.4, 0.8, 0.99, 0.6],
                        [0.1, 0.2, 0.3, 0.9]])
    # descending order per row: row0 0,3,2,1; row1 1,2,0,3; row2 2,1,3,0; row3 3,2,1,0
    ranks = torch.tensor([[0, 3, 2, 1], [2, 0, 1, 3], [3, 1, 0, 2], [3, 2, 1, 0]])
    assert torch.equal(descending_ranks(sim), ranks)
    torch.testing.assert_close(rank_weights(sim, ALPHA), torch.exp(-ALPHA * (ranks - 1.0)))
    without_self = rank_weights(sim, ALPHA, include_self=False)
    torch.testing.assert_close(without_self.diagonal(), torch.zeros(4))
    off = ~torch.eye(4, dtype=torch.bool)
    torch.testing.assert_close(without_self[off], torch.exp(-ALPHA * (ranks - 1.0))[off])


def test_rank_weights_brute_force_random():
    torch.manual_seed(3)
    f = torch.randn(7, 5)
    sim = cosine_similarity_matrix(f, f)
    weights = rank_weights(sim, 0.4)
    for i in range(7):
        order = sorted(range(7), key=lambda j: -sim[i, j].item())
        for rank, j in enumerate(order):
            assert weights[i, j].item() == pytest.approx(math.exp(-0.4 * (rank - 1)), rel=1e-6)


def test_symmetry_and_scale_invariance_c3():
    torch.manual_seed(0)
    fg, bg = torch.randn(6, 8), torch.randn(6, 8)
    total = contrastive_terms(fg, bg).total
    torch.testing.assert_close(contrastive_terms(bg, fg).total, total)
    torch.testing.assert_close(contrastive_terms(3.0 * fg, 0.5 * bg).total, total)


def test_forms_differ_by_constant_diagonal_and_pair_count():
    torch.manual_seed(1)
    f = torch.randn(5, 6, dtype=torch.float64)
    n = 5
    diagonal = n * -math.log(0.9995) * math.exp(ALPHA)
    with_self = sim_max(f, ALPHA) * n * n
    without_self = sim_max(f, ALPHA, include_self=False) * n * (n - 1)
    assert (with_self - without_self).item() == pytest.approx(diagonal, rel=1e-9)


# --- hint term (Eq. 29) ---------------------------------------------------------------------------

def test_hint_loss_zero_logits_gives_log2_c6():
    logits = torch.zeros(2, 1, 4, 4)
    hints = torch.zeros(2, 1, 4, 4)
    hints[0, 0, :2, :2] = 0.9
    # target 0.95: BCE(0, 0.95) = 0.95·log2 + 0.05·log2 = log 2
    assert hint_loss(logits, hints, 0.4, label_smoothing=0.1).item() == pytest.approx(LOG2, rel=1e-6)


def test_hint_loss_counts_only_positions_above_delta_fg():
    torch.manual_seed(0)
    hints = torch.rand(2, 1, 6, 6)
    hints[0, 0, 0, 0] = 0.4  # exactly δ_fg: not a hint (strict >)
    logits = torch.randn(2, 1, 6, 6, requires_grad=True)
    loss = hint_loss(logits, hints, delta_fg=0.4, label_smoothing=0.1)
    hinted = hints > 0.4
    target = 0.95
    p = torch.sigmoid(logits.detach()[hinted])
    by_hand = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    changed = logits.detach().clone()
    changed[~hinted] = torch.randn(int((~hinted).sum())) * 10
    assert hint_loss(changed, hints, 0.4).item() == pytest.approx(loss.item(), rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[~hinted] == 0) and torch.all(logits.grad[hinted] != 0)


def test_hint_loss_without_hints_is_zero_with_graph():
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    loss = hint_loss(logits, torch.full((2, 1, 4, 4), 0.1), 0.4)
    assert loss.item() == 0.0
    loss.backward()  # no NaN, no "does not require grad"
    assert torch.all(logits.grad == 0)


def test_hint_loss_background_hints_by_hand():
    logits = torch.tensor([[[[2.0, -1.0, 0.5]]]])
    hints = torch.tensor([[[[0.9, 0.01, 0.2]]]])  # fg, bg, neither
    loss = hint_loss(logits, hints, delta_fg=0.4, delta_bg=0.05, label_smoothing=0.1)

    def bce(z, t):
        p = 1 / (1 + math.exp(-z))
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))

    assert loss.item() == pytest.approx((bce(2.0, 0.95) + bce(-1.0, 0.05)) / 2, rel=1e-6)


def test_hint_map_is_max_over_classes_resized():
    cams = torch.zeros(1, 3, 8, 8)
    cams[0, 0, :4] = 0.3
    cams[0, 2, :4] = 0.8
    cams[0, 1, 4:] = 0.6
    hints = hint_map(cams, (8, 8))
    assert hints.shape == (1, 1, 8, 8)
    assert torch.all(hints[0, 0, :4] == 0.8) and torch.all(hints[0, 0, 4:] == 0.6)
    small = hint_map(cams, (4, 4), mode="nearest")
    assert torch.all(small[0, 0, :2] == 0.8) and torch.all(small[0, 0, 2:] == 0.6)
    const = hint_map(torch.full((2, 5, 16, 16), 0.7), (4, 4))  # bicubic keeps constants
    torch.testing.assert_close(const, torch.full((2, 1, 4, 4), 0.7))
    assert hint_map(torch.rand(2, 16, 16), (4, 4)).shape == (2, 1, 4, 4)


def test_ccam_loss_combines_terms():
    torch.manual_seed(0)
    fg, bg = torch.randn(4, 8), torch.randn(4, 8)
    logits = torch.zeros(4, 1, 3, 3)
    hints = torch.ones(4, 1, 3, 3)
    out = CCAMLoss(lambda_h=2.0)(fg, bg, logits, hints)
    terms = contrastive_terms(fg, bg)
    torch.testing.assert_close(out["loss"], terms.total + 2.0 * LOG2)
    assert CCAMLoss()(fg, bg)["hint"].item() == 0.0
    with pytest.raises(ValueError, match="without the logit map"):
        CCAMLoss()(fg, bg, hints=hints)


# --- polarity ---------------------------------------------------------------------------------------

def test_border_rule_c5():
    inside = torch.zeros(2, 1, 12, 12)
    border = torch.ones(2, 1, 12, 12)
    border[..., 4:-4, 4:-4] = 0
    inside[..., 4:-4, 4:-4] = 1
    assert foreground_is_flipped(border, "border") is True
    assert foreground_is_flipped(inside, "border") is False
    half = torch.full((1, 1, 12, 12), 0.5)
    assert border_mean(half).item() == 0.5
    assert foreground_is_flipped(half, "border") is False  # strict >


def test_hint_rule_picks_the_hinted_partition():
    probs = torch.full((2, 1, 6, 6), 0.1)
    probs[..., :3, :] = 0.9  # P high on the top half
    hints = torch.zeros(2, 1, 6, 6)
    hints[..., 1:3, 2:4] = 0.8  # object hinted in the top half
    assert foreground_is_flipped(probs, "hints", hints=hints) is False
    assert foreground_is_flipped(1 - probs, "hints", hints=hints) is True
    with pytest.raises(ValueError, match="no hint value is above"):
        foreground_is_flipped(probs, "hints", hints=torch.zeros_like(hints))
    with pytest.raises(ValueError, match="rule='centre'"):
        foreground_is_flipped(probs, "centre")
