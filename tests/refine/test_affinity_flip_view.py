"""AffinityNet's flipped view at inference, as the thesis code's `get_edge` (lucasdavid/PNOC@f250e0d
core/networks.py:361-367 with scripts/rw/inference.py:114): the image and its mirror are each padded on the right,
the edge logits cropped to the image's stride-4 grid, the mirror's flipped back, σ of the mean logit."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from wsss.stage_schema import stage_settings
from wsss.stages.affinity import AffinityStage


class LeftToRight(torch.nn.Module):
    """Edge logits that depend on the column of the canvas (as a CNN's border effects do): where the padding
    sits matters."""

    def forward(self, x):
        pooled = F.avg_pool2d(x[:, :1], 4, ceil_mode=True)
        return pooled * torch.arange(1, pooled.shape[-1] + 1) / pooled.shape[-1]

    def boundary_with_flip(self, x, size):
        logits = self(torch.cat([x, x.flip(-1)]))[:, 0]
        return torch.sigmoid(logits[:1] / 2 + logits[1:].flip(-1) / 2)[..., :size[0], :size[1]]


def boundary(image, **inference):
    stage = SimpleNamespace(scfg=stage_settings("affinity", {"inference": {"pad_to": 32, "flip": True, **inference}}),
                            net=LeftToRight())
    return AffinityStage.boundary_map(stage, image)


def get_edge_by_hand(image):
    """The upstream steps, written out: stack (x, flip x), pad right/bottom to 32, forward, crop, flip back."""
    x = torch.cat([image, image.flip(-1)])
    h, w = (image.shape[2] - 1) // 4 + 1, (image.shape[3] - 1) // 4 + 1
    edge = LeftToRight()(F.pad(x, [0, 32 - x.shape[3], 0, 32 - x.shape[2]]))[..., :h, :w]
    return torch.sigmoid(edge[0] / 2 + edge[1].flip(-1) / 2)


def test_flip_view_image_is_the_thesis_codes_get_edge():
    image = torch.randn(1, 3, 20, 24)
    torch.testing.assert_close(boundary(image), get_edge_by_hand(image))
    # the canvas mirror puts the padding left of the mirrored image: another map
    assert (boundary(image, flip_view="canvas") - get_edge_by_hand(image)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="flip_view='both'"):
        boundary(image, flip_view="both")
