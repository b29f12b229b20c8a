"""DeepLabV3+ on a tiny ResNet-18 (64×64 inputs, CPU)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from wsss.models.backbone import Backbone
from wsss.models.deeplab import DeepLabV3Plus, scaled_aspp_rates

K = 5


def build(output_stride: int = 16, norm: str = "gn", **kwargs) -> DeepLabV3Plus:
    torch.manual_seed(0)
    backbone = Backbone("resnet18", pretrained=False, output_stride=output_stride)
    return DeepLabV3Plus(backbone, K, output_stride=output_stride, norm=norm, **kwargs)


def atrous_dilations(model: DeepLabV3Plus) -> list[int]:
    convs = [m for m in model.aspp.modules() if isinstance(m, nn.Conv2d)]
    return [m.dilation[0] for m in convs if m.kernel_size == (3, 3)]


@pytest.mark.parametrize("output_stride, aspp_size, rates", [(16, 4, (6, 12, 18)), (8, 8, (12, 24, 36))])
def test_shapes_and_rates(output_stride, aspp_size, rates):
    model = build(output_stride).eval()
    x = torch.randn(2, 3, 64, 64)
    seen = {}
    model.aspp.register_forward_hook(
        lambda m, inp, out: seen.update(aspp_in=inp[0].shape, aspp_out=out.shape))
    model.decoder.low_level.register_forward_hook(lambda m, inp, out: seen.update(low=out.shape))
    with torch.no_grad():
        assert model(x).shape == (2, K, 64, 64)
        assert model.forward_features(x).shape == (2, K, 16, 16)  # logits at stride 4
    assert seen["aspp_in"] == (2, 512, aspp_size, aspp_size)
    assert seen["aspp_out"] == (2, 256, aspp_size, aspp_size)
    assert seen["low"] == (2, 48, 16, 16)
    assert model.aspp_rates == rates
    assert atrous_dilations(model) == list(rates)
    # 1×1 + 3 atrous + image pooling branches concatenated before the projection
    assert model.aspp.project[0][0].in_channels == 5 * 256
    assert model.decoder.fuse[0][0].in_channels == 256 + 48


def test_non_square_input_size():
    model = build().eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 48, 80)).shape == (1, K, 48, 80)


def test_rates_scale_with_output_stride():
    assert scaled_aspp_rates((6, 12, 18), 16) == (6, 12, 18)
    assert scaled_aspp_rates((6, 12, 18), 8) == (12, 24, 36)
    assert scaled_aspp_rates((6, 12, 18), 32) == (3, 6, 9)
    with pytest.raises(ValueError, match="output_stride=4"):
        scaled_aspp_rates((6, 12, 18), 4)
    with pytest.raises(ValueError, match="cannot be scaled"):
        scaled_aspp_rates((7,), 32)


def test_backbone_stride_mismatch_is_reported():
    backbone = Backbone("resnet18", pretrained=False, output_stride=16)
    with pytest.raises(ValueError, match="output_stride=8"):
        DeepLabV3Plus(backbone, K, output_stride=8)
    with pytest.raises(ValueError, match="norm='ln'"):
        DeepLabV3Plus(backbone, K, norm="ln")


def test_eval_is_deterministic_and_train_uses_dropout():
    model = build()
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(2)
        b = model(x)
    assert not torch.allclose(a, b)  # dropout is active in training mode


def test_gradients_reach_backbone_and_head():
    model = build().train()
    x = torch.randn(2, 3, 64, 64)
    target = torch.randint(0, K, (2, 64, 64))
    nn.functional.cross_entropy(model(x), target).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    for module in [model.backbone.body.conv1, model.aspp, model.decoder.low_level, model.decoder.classifier]:
        assert sum(p.grad.abs().sum() for p in module.parameters()) > 0


def test_new_modules_are_exactly_the_head():
    model = build()
    head = {id(p) for m in model.new_modules() for p in m.parameters()}
    backbone = {id(p) for p in model.backbone.parameters()}
    assert head.isdisjoint(backbone)
    assert head | backbone == {id(p) for p in model.parameters()}


def test_group_norm_vs_batch_norm():
    gn, bn = build(norm="gn"), build(norm="bn")
    head = lambda m: [x for h in m.new_modules() for x in h.modules()]  # noqa: E731
    gns = [m for m in head(gn) if isinstance(m, nn.GroupNorm)]
    assert gns and all(m.num_groups == 4 for m in gns)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in head(gn))
    assert any(isinstance(m, nn.BatchNorm2d) for m in head(bn))
    assert not any(isinstance(m, nn.GroupNorm) for m in head(bn))
    x = torch.randn(1, 3, 64, 64)
    assert gn.train()(x).shape == (1, K, 64, 64)  # GN trains with batch 1
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn.train()(x)  # BN image-pooling branch cannot
    assert bn.train()(torch.randn(2, 3, 64, 64)).shape == (2, K, 64, 64)
