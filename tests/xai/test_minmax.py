"""MinMax-CAM / D-MinMax-CAM (thesis eq. 18–24): forms agree, brute-force references, KUR remark."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from wsss.xai.methods import CAM, DMinMaxCAM, DMinMaxGradCAM, MinMaxCAM, MinMaxGradCAM
from wsss.xai.split import SplitModel

RAW = dict(normalize="none", relu=False)


def detecting_net(make_tiny, dtype=torch.float64):
    net = make_tiny(seed=2, num_classes=6, dtype=dtype)
    with torch.no_grad():
        net.fc.weight.mul_(60)
        net.fc.bias.copy_(torch.tensor([3.0, -3.0, 0, 0, 0, 0]))
    return net


CONTEXT = torch.tensor([[0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [1, 0, 1, 1, 0, 1]], dtype=torch.bool)


@pytest.mark.parametrize("context", [None, CONTEXT])
@pytest.mark.parametrize("weights_cls,grad_cls", [(MinMaxCAM, MinMaxGradCAM), (DMinMaxCAM, DMinMaxGradCAM)])
def test_gradient_form_equals_weight_form_on_gap_head(make_tiny, images, context, weights_cls, grad_cls):
    net = detecting_net(make_tiny)
    x = images.double()
    weights = weights_cls(**RAW)(net.split_gap(), x, None, context=context)
    grads = grad_cls(**RAW)(net.split_generic(), x, None, context=context)  # autograd through the head
    assert weights.abs().max() > 0
    torch.testing.assert_close(grads, weights, atol=1e-9 * weights.abs().max().item(), rtol=0)


def brute_force_weights(weight: torch.Tensor, label_set: set[int], u: int, decomposed: bool) -> torch.Tensor:
    """Eq. 21 / eq. 24 for one label u ∈ C_x, written literally with Python sets (a = 1)."""
    others = sorted(label_set - {u})
    n_others = max(len(others), 1)
    other_sum = sum((weight[c] for c in others), torch.zeros_like(weight[0]))
    if not decomposed:
        return weight[u] - other_sum / n_others
    all_sum = sum((weight[c] for c in sorted(label_set)), torch.zeros_like(weight[0]))
    n_all = max(len(label_set), 1)
    return weight[u].clamp(min=0) - other_sum.clamp(min=0) / n_others + all_sum.clamp(max=0) / n_all


@pytest.mark.parametrize("cls,decomposed", [(MinMaxCAM, False), (DMinMaxCAM, True)])
def test_weight_form_matches_brute_force(make_tiny, images, cls, decomposed):
    net = detecting_net(make_tiny)
    x = images.double()
    ours = cls(**RAW)(net.split_gap(), x, None)
    detected = torch.sigmoid(net(x)) > 0.5
    acts = net.features(x)
    for b in range(3):
        label_set = set(detected[b].nonzero().flatten().tolist())
        assert len(label_set) >= 2
        # the thesis defines the maps for present labels; for absent ones the official code divides
        # the sum over all of C_x by max(n − 1, 1), which the gradient-form test covers
        for u in sorted(label_set):
            w = brute_force_weights(net.fc.weight, label_set, u, decomposed)
            expected = torch.einsum("k,khw->hw", w, acts[b])
            torch.testing.assert_close(ours[b, u], expected, atol=1e-10, rtol=1e-10)


def test_d_minmax_equals_minmax_with_non_negative_weights(make_tiny, images):
    """§B.1.5: with max(0, w) = w (what KUR pushes towards) D-MinMax-CAM reduces to MinMax-CAM."""
    net = detecting_net(make_tiny)
    x = images.double()
    minmax, d_minmax = MinMaxCAM(**RAW), DMinMaxCAM(**RAW)
    mixed = (minmax(net.split_gap(), x), d_minmax(net.split_gap(), x))
    assert (mixed[0] - mixed[1]).abs().max() > 1e-3  # negative control: mixed signs differ
    with torch.no_grad():
        net.fc.weight.abs_()
    context = torch.sigmoid(net(x)) > 0.5
    assert context.sum(1).min() >= 2
    torch.testing.assert_close(d_minmax(net.split_gap(), x), minmax(net.split_gap(), x), atol=1e-10, rtol=0)


def test_single_label_context_reduces_to_cam(make_tiny, images):
    """n = 1: MinMax-CAM is CAM; D-MinMax-CAM without background term is CAM of relu(W)."""
    net = detecting_net(make_tiny)
    x = images.double()
    context = torch.zeros(3, 6, dtype=torch.bool)
    context[:, 2] = True
    targets = torch.full((3, 1), 2)
    cam = CAM(**RAW)(net.split_gap(), x, targets)
    torch.testing.assert_close(MinMaxCAM(**RAW)(net.split_gap(), x, targets, context=context), cam)
    positive = SplitModel.from_gap_classifier(net.features, net.fc.weight.clamp(min=0))
    d_minmax = DMinMaxCAM(a_bg=0.0, **RAW)(net.split_gap(), x, targets, context=context)
    torch.testing.assert_close(d_minmax, CAM(**RAW)(positive, x, targets))


def test_gradient_form_matches_per_label_autograd_on_nonlinear_head(make_tiny, images):
    """Batched head Jacobian vs one backward per label on a head that is not GAP + linear."""
    net = detecting_net(make_tiny)
    torch.manual_seed(5)
    head = nn.Sequential(nn.Conv2d(12, 12, 1), nn.Softplus(), net.pool, net.fc).double()
    model = SplitModel.from_modules(net.features, head)
    x = images.double()
    ours = MinMaxGradCAM(**RAW)(model, x, None)
    acts = net.features(x).detach().requires_grad_(True)
    logits = head(acts)
    detected = (torch.sigmoid(logits) > 0.5).double().detach()
    n = detected.sum(1)
    for u in range(6):
        others = detected.clone()
        others[:, u] = 0
        objective = logits[:, u] - (logits * others).sum(1) / (n - 1).clamp(min=1)
        (grad,) = torch.autograd.grad(objective.sum(), acts, retain_graph=True)
        expected = torch.einsum("bk,bkhw->bhw", grad.sum(dim=(2, 3)), acts.detach())
        torch.testing.assert_close(ours[:, u], expected, atol=1e-10, rtol=1e-8)


def test_weight_form_needs_linear_head(make_tiny, images):
    with pytest.raises(ValueError, match="form='gradient'"):
        MinMaxCAM(form="weights")(make_tiny().split_generic(), images)


def test_cam_of_kur_camnet_reads_the_effective_weight():
    """CAM on the project's CAMNet (KUR on) equals the network's own class maps."""
    from wsss.models.backbone import Backbone
    from wsss.models.cam_head import CAMNet

    torch.manual_seed(0)
    net = CAMNet(Backbone("resnet18", pretrained=False, output_stride=16), num_classes=4, kur=True,
                 kur_alpha=4.0).eval()
    model = SplitModel.from_gap_classifier(net.backbone, net.head.effective_weight)
    x = torch.randn(2, 3, 32, 32)
    targets = torch.tensor([[0, 3], [2, 1]])
    result = CAM(**RAW).compute(model, x, targets)
    logits, cams = net(x)
    torch.testing.assert_close(result.logits, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(result.maps, cams.gather(1, targets[..., None, None].expand(-1, -1, 2, 2)),
                               atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the weight is read at call time: a changed parameter changes the maps
        net.head.weight.mul_(-1)
    assert not torch.allclose(CAM(**RAW)(model, x, targets), result.maps)
