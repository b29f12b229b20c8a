"""The XAI classifier's bias b (thesis eq. 25, y = σ(GAP(A)·W + b)): in the logits, detection and every metric,
never in a map. Hand case on a 2-class head whose body is the identity (the image is its own feature map)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from wsss.models.cam_head import CAMNet
from wsss.xai import MultiLabelCamMetrics, SplitModel, build_method, update_cam_metrics


class IdentityBody(nn.Module):
    """A 'backbone' whose only feature map is its input (K = 2 channels)."""

    out_channels = 2

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x]


# channel 0: mean −0.2, so s_0 = −0.2; channel 1: mean 1.0, so s_1 = 1.0 (W = identity)
IMAGE = torch.tensor([[[[-0.8, 0.4], [0.0, -0.4]],
                       [[2.0, 0.0], [0.0, 2.0]]]])
BIAS = torch.tensor([0.5, -1.5])


def hand_net(bias: torch.Tensor | None) -> CAMNet:
    net = CAMNet(IdentityBody(), 2, bias=bias is not None).eval()
    with torch.no_grad():
        net.head.weight.copy_(torch.eye(2))
        if bias is not None:
            net.head.bias.copy_(bias)
    return net


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_head_bias_is_optional_and_off_by_default():
    assert hand_net(None).head.bias is None
    assert "head.bias" in hand_net(BIAS).state_dict()
    logits, cams = hand_net(BIAS)(IMAGE)
    torch.testing.assert_close(logits, torch.tensor([[-0.2 + 0.5, 1.0 - 1.5]]))
    torch.testing.assert_close(cams, hand_net(None)(IMAGE)[1])  # b never enters a CAM


def test_the_bias_flips_both_detections():
    metric = MultiLabelCamMetrics(2, threshold=0.5, class_set="detected")
    for bias, detected in ((None, [[1]]), (BIAS, [[0]])):  # σ(−0.2) < 0.5 < σ(0.3); σ(1.0) > 0.5 > σ(−0.5)
        model = SplitModel.from_cam_net(hand_net(bias))
        probs = torch.sigmoid(model(IMAGE))
        assert metric.select_targets(probs).tolist() == detected


@pytest.mark.parametrize("method", ["cam", "gradcam", "minmax_cam"])
def test_maps_do_not_depend_on_the_bias(method):
    targets = torch.tensor([[0, 1]])
    context = torch.ones(1, 2)
    with_bias = build_method(method)(SplitModel.from_cam_net(hand_net(BIAS)), IMAGE, targets, context=context)
    without = build_method(method)(SplitModel.from_cam_net(hand_net(None)), IMAGE, targets, context=context)
    torch.testing.assert_close(with_bias, without)


def test_metrics_use_the_bias_in_every_confidence():
    """Class 0 is the one detection. CAM_0 = relu(channel 0) = [[0, .4], [0, 0]] → mask [[0, 1], [0, 0]]:
    x ⊙ M has channel-0 mean 0.1, x ⊙ (1 − M) has −0.3. Y = σ(0.3), O = σ(0.6), Ō = σ(0.2)."""
    model = SplitModel.from_cam_net(hand_net(BIAS))
    metric = MultiLabelCamMetrics(2)
    probs = torch.sigmoid(model(IMAGE))
    targets = metric.select_targets(probs)
    maps = build_method("cam")(model, IMAGE, targets)
    update_cam_metrics(metric, model, IMAGE, maps, targets, probs)
    out = metric.compute()
    y, o, o_bar = sigmoid(0.3), sigmoid(0.6), sigmoid(0.2)
    assert out["count"].tolist() == [1.0, 0.0]
    assert float(out["ic"]) == pytest.approx(100.0)  # O > Y
    assert float(out["ad"]) == pytest.approx(100 * max(0.0, y - o) / y)
    assert float(out["ar"]) == pytest.approx(100 * (y - o_bar) / y, abs=1e-4)  # 4.28 %; 5.46 % without b
    assert float(out["ar"]) != pytest.approx(100 * (sigmoid(-0.2) - sigmoid(-0.3)) / sigmoid(-0.2), abs=1e-2)
