"""Multi-scale + flip TTA of a segmentation network."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsss.segmentation.inference import multiscale_probabilities

K = 4


def asymmetric_net() -> nn.Module:
    """A small conv net that is not flip-equivariant (random 3×3 kernels)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, K, 3, padding=1)).eval()


def mirror_symmetric_image() -> torch.Tensor:
    torch.manual_seed(1)
    left = torch.randn(1, 3, 20, 12)
    return torch.cat([left, left.flip(-1)], dim=-1)  # 20 × 24, x == flip(x)


@pytest.mark.parametrize("fuse", ["softmax", "logits"])
def test_flip_tta_of_a_symmetric_image_is_symmetric(fuse):
    net, x = asymmetric_net(), mirror_symmetric_image()
    assert torch.equal(x, x.flip(-1))
    probs = multiscale_probabilities(net, x, scales=(0.5, 1.0, 1.5), flip=True, fuse=fuse)
    assert probs.shape == (1, K, 20, 24)
    torch.testing.assert_close(probs, probs.flip(-1), atol=1e-6, rtol=0)
    # without the flip views the same network is not symmetric (so the check above can fail)
    plain = multiscale_probabilities(net, x, scales=(0.5, 1.0, 1.5), flip=False, fuse=fuse)
    assert (plain - plain.flip(-1)).abs().max() > 1e-3


@pytest.mark.parametrize("fuse", ["softmax", "logits"])
def test_probabilities_sum_to_one(fuse):
    probs = multiscale_probabilities(asymmetric_net(), torch.randn(2, 3, 17, 23), scales=(0.75, 1.25), fuse=fuse)
    assert probs.shape == (2, K, 17, 23)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 17, 23))
    assert probs.min() >= 0


def test_single_view_is_the_softmax_of_the_network():
    net, x = asymmetric_net(), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = net(x).softmax(1)
    for fuse in ("softmax", "logits"):
        torch.testing.assert_close(multiscale_probabilities(net, x, scales=(1.0,), flip=False, fuse=fuse), expected)


def test_fusions_against_a_hand_loop():
    net, x = asymmetric_net(), torch.randn(1, 3, 16, 20)
    views = []
    with torch.no_grad():
        for s in (0.5, 1.5):
            xs = F.interpolate(x, size=(round(16 * s), round(20 * s)), mode="bilinear", align_corners=False)
            for flipped in (False, True):
                out = net(xs.flip(-1)) if flipped else net(xs)
                out = out.flip(-1) if flipped else out
                views.append(F.interpolate(out, size=(16, 20), mode="bilinear", align_corners=False))
    mean_softmax = torch.stack([v.softmax(1) for v in views]).mean(0)
    # thesis code: per scale logits(x) + flip(logits(flip x)), mean over scales, softmax
    flip_summed = torch.stack([views[0] + views[1], views[2] + views[3]]).mean(0).softmax(1)
    torch.testing.assert_close(multiscale_probabilities(net, x, (0.5, 1.5), True, "softmax"), mean_softmax)
    torch.testing.assert_close(multiscale_probabilities(net, x, (0.5, 1.5), True, "logits"), flip_summed)
    assert not torch.allclose(mean_softmax, flip_summed)


def test_logit_fusion_by_hand():
    # Every view predicts logits (0, ln 3): the thesis code's fusion adds the two flips -> softmax(0, 2 ln 3)
    # = (1/10, 9/10) at every pixel, and softmax(0, ln 3) = (1/4, 3/4) without flips; the mean of the
    # softmaxes is (1/4, 3/4) either way.
    def constant(x):
        out = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        out[:, 1] = torch.log(torch.tensor(3.0))
        return out

    x = torch.randn(1, 3, 6, 8)
    pix = lambda p: p[0, :, 2, 3].tolist()  # noqa: E731
    assert pix(multiscale_probabilities(constant, x, (0.5, 1.0), True, "logits")) == pytest.approx([0.1, 0.9])
    assert pix(multiscale_probabilities(constant, x, (0.5, 1.0), False, "logits")) == pytest.approx([0.25, 0.75])
    assert pix(multiscale_probabilities(constant, x, (0.5, 1.0), True, "softmax")) == pytest.approx([0.25, 0.75])


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="fuse='max'"):
        multiscale_probabilities(asymmetric_net(), torch.randn(1, 3, 8, 8), fuse="max")
    with pytest.raises(ValueError, match="scales is empty"):
        multiscale_probabilities(asymmetric_net(), torch.randn(1, 3, 8, 8), scales=())


def test_logit_sum_fusion_by_hand():
    # lucasdavid/PNOC@f250e0d:inference.py:124-125: softmax(np.sum(ps)) over scales, each p = logits + flipped
    # logits. Constant logits (0, ln 3) at 2 scales with flips: softmax(0, 4 ln 3) = (1/82, 81/82); without
    # flips softmax(0, 2 ln 3) = (1/10, 9/10), where `logits` (the scale mean) gives (1/4, 3/4).
    def constant(x):
        out = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        out[:, 1] = torch.log(torch.tensor(3.0))
        return out

    x = torch.randn(1, 3, 6, 8)
    pix = lambda p: p[0, :, 2, 3].tolist()  # noqa: E731
    fused = lambda flip: pix(multiscale_probabilities(constant, x, (0.5, 1.0), flip, "logit_sum"))  # noqa: E731
    assert fused(True) == pytest.approx([1 / 82, 81 / 82])
    assert fused(False) == pytest.approx([0.1, 0.9])


def test_pil_bicubic_scales_and_fp32_as_the_thesis_code():
    """lucasdavid/PNOC@f250e0d:scripts/segmentation/inference.py:113: each scale is the uint8 image resized with
    PIL BICUBIC, then normalised; no autocast. Checked through the stage's `probabilities` against PIL."""
    from types import SimpleNamespace

    import numpy as np
    from PIL import Image

    from wsss.stage_schema import stage_settings
    from wsss.stages.deeplab import DeepLabStage

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pixels = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    to_tensor = lambda a: ((torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255  # noqa: E731
                            - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)).float()
    seen = []

    def net(x):   # logits (red, 0): the softmax of class 0 is σ(red)
        seen.append((tuple(x.shape[-2:]), torch.is_autocast_enabled("cpu"), x.clone()))
        return torch.cat([x[:, :1], torch.zeros_like(x[:, :1])], 1)

    stage = SimpleNamespace(scfg=stage_settings("deeplab", {"inference": {
                                "scales": [0.5], "flip": False, "fuse": "logits", "image_resize": "pil_bicubic",
                                "fp32": True}}),
                            trainer=SimpleNamespace(datamodule=SimpleNamespace(mean=mean, std=std)),
                            device=torch.device("cpu"), dtype=torch.float32, net=net)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        DeepLabStage.probabilities(stage, to_tensor(pixels))
    want = to_tensor(np.asarray(Image.fromarray(pixels).resize((10, 6), Image.BICUBIC)))
    (size, autocast, got), = seen
    assert size == (6, 10) and not autocast
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
