"""PoolNet (edge-free) saliency network and its BCE loss with ignored pixels."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from wsss.models.backbone import Backbone
from wsss.models.poolnet import FeatureAggregation, PoolNet, PyramidPooling, saliency_loss


def build(output_stride: int = 16, **kwargs) -> PoolNet:
    torch.manual_seed(0)
    return PoolNet(Backbone("resnet18", pretrained=False, output_stride=output_stride), **kwargs)


@pytest.mark.parametrize("output_stride", [16, 32])
def test_output_is_one_logit_map_at_input_size(output_stride):
    model = build(output_stride).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1, 64, 64)
        assert model(torch.randn(1, 3, 48, 80)).shape == (1, 1, 48, 80)


def test_global_guidance_reaches_every_decoder_level():
    model = build().eval()
    sizes = []
    for guide in model.guides:
        guide.register_forward_hook(lambda m, inp, out: sizes.append(out.shape[-2:]))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    # levels 0..2 of ResNet-18 at OS16: strides 4, 8, 16 -> 16, 8, 4 (visited deep to shallow)
    assert [tuple(s) for s in sizes] == [(4, 4), (8, 8), (16, 16)]


def test_pyramid_pooling_sees_the_whole_map():
    torch.manual_seed(0)
    ppm = PyramidPooling(4).eval()
    x = torch.rand(1, 4, 9, 9)
    moved = x.clone()
    moved[..., 8, 8] += 5.0
    with torch.no_grad():
        delta = (ppm(x) - ppm(moved))[0, :, 0, 0].abs().sum()
    # beyond the receptive field of the two 3×3 convs: only the pooled branches carry the change
    assert delta > 0


def test_feature_aggregation_adds_pooled_context_and_handles_tiny_maps():
    fam = FeatureAggregation(3, 5).eval()
    for conv in fam.convs:
        nn.init.zeros_(conv.weight)  # no pooled context: FAM(x) = conv(relu(x))
    x = torch.randn(1, 3, 2, 2)  # smaller than the 4 and 8 pooling kernels
    with torch.no_grad():
        torch.testing.assert_close(fam(x), fam.out(torch.relu(x)))
        assert fam(x, (4, 4)).shape == (1, 5, 4, 4)


def test_level_channels_must_match_stages():
    backbone = Backbone("resnet18", pretrained=False, output_stride=16)
    with pytest.raises(ValueError, match="one entry per level"):
        PoolNet(backbone, level_channels=(64, 64))
    model = PoolNet(backbone, level_channels=(32, 32, 64, 64)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_gradients_flow_to_head_and_backbone():
    model = build().train()
    x = torch.randn(2, 3, 64, 64)
    target = (torch.rand(2, 1, 64, 64) > 0.5).float()
    saliency_loss(model(x), target).backward()
    for head in model.new_modules():
        for name, p in head.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    # (timm zero-initialises the last BN of each residual block, so inner block convs get no gradient yet)
    assert model.backbone.body.conv1.weight.grad.abs().sum() > 0


def test_frozen_backbone_batchnorm_keeps_running_stats():
    model = build().train()
    bn = model.backbone.body.bn1
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert not bn.training and torch.equal(bn.running_mean, before)
    trainable = build(frozen_bn=False).train()
    trainable(torch.randn(2, 3, 64, 64))
    assert trainable.backbone.body.bn1.training
    assert not torch.equal(trainable.backbone.body.bn1.running_mean, before)


def test_frozen_batchnorm_holds_from_construction():
    """Lightning's fit does not call train() on the module: a PoolNet just built must already keep its
    backbone's running statistics."""
    model = build()
    bn = model.backbone.body.bn1
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert model.training and not bn.training and torch.equal(bn.running_mean, before)


def test_new_modules_exclude_backbone():
    model = build()
    head = {id(p) for m in model.new_modules() for p in m.parameters()}
    backbone = {id(p) for p in model.backbone.parameters()}
    assert head.isdisjoint(backbone) and head | backbone == {id(p) for p in model.parameters()}


# --- loss ----------------------------------------------------------------------------------------

def test_loss_by_hand_and_ignored_pixels():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 5.0]]]], requires_grad=True)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 255.0]]]])

    def bce(z, t):
        return math.log(1 + math.exp(-z)) if t == 1 else math.log(1 + math.exp(z))

    expected = [bce(0.0, 1), bce(2.0, 0), bce(-1.0, 0)]
    assert saliency_loss(logits, target).item() == pytest.approx(sum(expected) / 3, rel=1e-6)
    assert saliency_loss(logits, target, reduction="sum").item() == pytest.approx(sum(expected), rel=1e-6)
    other = logits.detach().clone()
    other[0, 0, 1, 1] = -40.0
    assert saliency_loss(other, target).item() == pytest.approx(sum(expected) / 3, rel=1e-6)
    saliency_loss(logits, target).backward()
    assert logits.grad[0, 0, 1, 1] == 0 and logits.grad[0, 0, 0, 0] != 0


def test_loss_accepts_uint8_targets_without_channel_and_all_ignored():
    logits = torch.zeros(2, 1, 3, 3, requires_grad=True)
    target = torch.ones(2, 3, 3, dtype=torch.uint8)
    assert saliency_loss(logits, target).item() == pytest.approx(math.log(2), rel=1e-6)
    ignored = saliency_loss(logits, torch.full((2, 3, 3), 255, dtype=torch.uint8))
    assert ignored.item() == 0.0
    ignored.backward()


def test_loss_rejects_bad_targets():
    with pytest.raises(ValueError, match="0, 1 or 255"):
        saliency_loss(torch.zeros(1, 1, 2, 2), torch.tensor([[[0, 128], [1, 255]]]))
    with pytest.raises(ValueError, match="does not match"):
        saliency_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 3, 3))


# --- switches toward the thesis code's PoolNet (poolnet/networks @ f250e0d) ------------------------

def test_thesis_code_structure_on_resnet50():
    # ResNet-50 + stem: convert 64/256/512/1024/2048 -> 128/256/256/512/512; PPM from a ReLU-free 1x1
    # projection of layer4 with 1x1 branches; FAMs 512->512->256->256->128, last one at stride 2.
    backbone = Backbone("resnet50", pretrained=False, output_stride=16)
    model = PoolNet(backbone, level_channels=(128, 256, 256, 512, 512), stem_level=True, ppm="poolnet",
                    bn_affine_trainable=False, init="normal").eval()
    assert [lat[0].in_channels for lat in model.laterals] == [64, 256, 512, 1024, 2048]
    assert model.ppm_projection.in_channels == 2048 and not isinstance(model.ppm_projection, nn.Sequential)
    assert all(b[0].kernel_size == (1, 1) for b in model.ppm.branches)
    assert [(f.convs[0].in_channels, f.out.out_channels) for f in model.fams] == [
        (256, 128), (256, 256), (512, 256), (512, 512)]
    seen = []
    model.last_fam.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-2:]))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    assert tuple(seen[0]) == (32, 32)  # stride 2
    assert not any(p.requires_grad for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)
                   for p in m.parameters())
    convs = [m for h in model.new_modules() for m in h.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:  # PyTorch's default would give the 128-input score conv std 0.051 and a bias
        assert conv.weight.std().item() == pytest.approx(0.01, rel=0.25)
    assert model.score.bias.abs().max() == 0


def test_default_structure_is_unchanged_by_the_switches():
    model = build()
    assert model.ppm_projection is None and model.stem is None
    assert all(b[0].kernel_size == (3, 3) for b in model.ppm.branches)
    assert all(p.requires_grad for p in model.backbone.body.bn1.parameters())
    with pytest.raises(ValueError, match="ppm='psp'"):
        build(ppm="psp")
