"""KUR (thesis eq. 25) and binary label smoothing against hand-computed values and gradients."""
import math

import torch

from wsss.losses.classification import multilabel_soft_margin, smooth_labels
from wsss.models.cam_head import CAMHead


def test_kur_weights_by_hand():
    head = CAMHead(in_channels=2, num_classes=2, kur=True, kur_alpha=1.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))  # (C, K)
    e1 = math.exp(1)
    # kernel 0: softmax over classes of (1, 0) = (e/(e+1), 1/(e+1)); kernel 1: softmax of (0, 2)
    s0 = (e1 / (e1 + 1), 1 / (e1 + 1))
    s1 = (1 / (1 + math.exp(2)), math.exp(2) / (1 + math.exp(2)))
    expected = torch.tensor([[1.0 * s0[0], 0.0 * s1[0]], [0.0 * s0[1], 2.0 * s1[1]]])
    assert torch.allclose(head.effective_weight(), expected, atol=1e-6)
    head.kur_alpha = 2.0  # KUR-alpha with alpha = C
    assert torch.allclose(head.effective_weight(), 2 * expected, atol=1e-6)


def test_kur_gradient_by_hand():
    # d/dw of w * softmax(w)_c for a single kernel with two classes: s + w * s * (1 - s) on the diagonal.
    head = CAMHead(in_channels=1, num_classes=2, kur=True)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.5], [-0.3]]))
    head.effective_weight()[0, 0].backward()
    w0, w1 = 0.5, -0.3
    s = math.exp(w0) / (math.exp(w0) + math.exp(w1))
    assert math.isclose(head.weight.grad[0, 0].item(), s + w0 * s * (1 - s), rel_tol=1e-5)
    assert math.isclose(head.weight.grad[1, 0].item(), -w0 * s * (1 - s), rel_tol=1e-5)


def test_cam_head_is_a_bias_free_conv():
    head = CAMHead(3, 4)
    x = torch.randn(2, 3, 5, 5)
    ref = torch.einsum("ck,bkhw->bchw", head.weight, x)
    assert torch.allclose(head(x), ref, atol=1e-5)
    assert not any("bias" in n for n, _ in head.named_parameters())


def test_label_smoothing_values():
    y = torch.tensor([[1.0, 0.0]])
    assert torch.allclose(smooth_labels(y, 0.1), torch.tensor([[0.95, 0.05]]))


def test_multilabel_soft_margin_by_hand():
    logits = torch.tensor([[2.0, -1.0], [0.0, 3.0]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])

    def bce(z, t):
        p = 1 / (1 + math.exp(-z))
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))

    for eps in (0.0, 0.1):
        t = [[1 - eps / 2, eps / 2], [eps / 2, 1 - eps / 2]]
        want = sum(bce(z, tt) for zr, tr in zip(logits.tolist(), t) for z, tt in zip(zr, tr)) / 4
        assert math.isclose(multilabel_soft_margin(logits, y, eps).item(), want, rel_tol=1e-6)
    multilabel_soft_margin(logits, y, 0.1).backward()
    # gradient of the mean BCE: (sigmoid(z) - t) / (B * C)
    t = torch.tensor([[0.95, 0.05], [0.05, 0.95]])
    assert torch.allclose(logits.grad, (torch.sigmoid(logits.detach()) - t) / 4, atol=1e-6)
