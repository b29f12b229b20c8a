"""AffinityNet (IRN boundary branch): shapes on resnet18, frozen backbone, gradients, flip TTA."""
import pytest
import torch
from torch import nn

from wsss.losses.affinity import affinity_loss
from wsss.models.affinitynet import AffinityNet
from wsss.models.backbone import Backbone
from wsss.ops.pairs import PairIndex, pair_labels


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return Backbone("resnet18", pretrained=False)


def test_shapes_and_affinity_range(backbone):
    net = AffinityNet(backbone)
    x = torch.randn(2, 3, 64, 64)
    edge = net(x)
    assert edge.shape == (2, 1, 16, 16)
    # IRN / thesis code: stem (after max-pool) + layer1..4, five 32-channel branches, 160 -> 1 edge layer
    assert len(net.projections) == 5 == len(backbone.channels) + 1
    assert net.projections[0].conv.in_channels == 64 and net.edge.in_channels == 160
    assert AffinityNet(backbone, stem_branch=False).edge.in_channels == 128
    index = PairIndex(16, 16, 5)
    aff = net.pair_affinities(x, index)
    assert aff.shape == (2, 34, index.source_shape[0] * index.source_shape[1])
    assert (aff >= 0).all() and (aff <= 1).all()
    b = net.boundary_with_flip(torch.randn(1, 3, 70, 66), size=(18, 17))
    assert b.shape == (1, 18, 17)


def test_frozen_backbone_gets_no_gradient_and_stays_in_eval(backbone):
    net = AffinityNet(backbone).train()
    assert net.training and not net.backbone.training
    x = torch.randn(2, 3, 64, 64)
    index = PairIndex(16, 16, 5)
    labels = torch.randint(0, 3, (2, 16, 16))
    loss = affinity_loss(net.pair_affinities(x, index), *pair_labels(labels, index)).total
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.head_parameters())
    assert all(p.grad is None for p in net.backbone.parameters())


def test_unfrozen_backbone_gets_gradients():
    net = AffinityNet(Backbone("resnet18", pretrained=False), freeze_backbone=False).train()
    assert net.backbone.training
    net.boundary(torch.randn(2, 3, 32, 32)).mean().backward()
    assert sum(float(p.grad.abs().sum()) for p in net.backbone.parameters() if p.grad is not None) > 0


def test_stem_branch_reads_the_stems_max_pool_output(backbone):
    # The stem projection sees exactly conv1 -> bn1 -> act1 -> maxpool of the input (upstream stage1).
    net = AffinityNet(backbone).eval()
    x = torch.randn(1, 3, 32, 32)
    seen = []
    handle = net.projections[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    net(x)
    handle.remove()
    body = backbone.body
    assert body.maxpool.kept_output is None  # not held after the forward
    with torch.no_grad():
        stem = body.maxpool(body.act1(body.bn1(body.conv1(x))))
    torch.testing.assert_close(seen[0], stem)


def test_affinities_stay_float32_under_bf16_autocast(backbone):
    # A negative pair at affinity 0.999: bf16 rounds it to 1.0 and -log(1 + eps - a) jumps from 6.9 to 11.5.
    assert torch.tensor(0.999, dtype=torch.bfloat16).item() == 1.0
    net = AffinityNet(backbone)
    index = PairIndex(8, 8, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        aff = net.pair_affinities(torch.randn(1, 3, 32, 32), index)
        flip = net.boundary_with_flip(torch.randn(1, 3, 32, 32))
    assert aff.dtype == torch.float32 and flip.dtype == torch.float32
    neg = torch.ones(1, dtype=torch.bool)
    loss = affinity_loss(torch.tensor([0.999]), ~neg, ~neg, neg)
    assert loss.neg.item() == pytest.approx(-torch.log(torch.tensor(1e-5 + 0.001)).item(), rel=1e-4)


class StubBackbone(nn.Module):
    """Stages at strides 2, 4, 8 (like a stem exposed at stride 2) to exercise pooling and upsampling."""

    name = "stub"
    channels = [8, 16, 24]
    reductions = [2, 4, 8]

    def forward(self, x):
        h, w = x.shape[-2:]
        return [torch.ones(x.shape[0], c, -(-h // r), -(-w // r)) * x.mean() for c, r in zip(self.channels,
                                                                                              self.reductions)]


def test_finer_and_coarser_stages_are_resized_to_stride_4():
    net = AffinityNet(StubBackbone(), branch_channels=8, gn_groups=2, stem_branch=False)
    assert net(torch.randn(1, 3, 36, 44)).shape == (1, 1, 9, 11)
    bad = StubBackbone()
    bad.reductions = [8, 16, 32]
    with pytest.raises(ValueError, match="stride-4"):
        AffinityNet(bad)
    with pytest.raises(ValueError, match="stem_branch=false"):
        AffinityNet(StubBackbone())
