"""OC-CSE's soft mask divides by the maximum over the batch. The thesis code computed it on the DataParallel-
gathered batch (lucasdavid/PNOC@f250e0d:scripts/cam/train_poc.py:238,256): under DDP with
`stage.occse.gather_batch_max`, two gloo ranks with half a batch each get exactly the masks of one process
holding the whole batch, and without the gather their own (larger) masks."""
import torch
import torch.distributed as dist
import torch.nn.functional as F

from tests.gloo_ranks import on_gloo_ranks
from wsss.losses.occse import class_activation_mask

WORLD, BATCH, SIZE = 2, 4, (8, 8)


def cams_and_erased():
    g = torch.Generator().manual_seed(0)
    cams = torch.randn(BATCH, 3, 4, 4, generator=g)
    cams[0] *= 5.0   # the batch maximum sits on rank 0's first image
    return cams, torch.tensor([0, 1, 2, 1])


def by_hand(cams, erased):
    """ReLU on the grid, bilinear resize, ÷ (maximum over all given images + 1e-5)."""
    maps = F.interpolate(F.relu(cams[torch.arange(len(erased)), erased][:, None]), size=SIZE, mode="bilinear",
                         align_corners=False)
    return maps / (maps.max() + 1e-5)


def rank_masks(rank: int, gather: bool) -> torch.Tensor:
    """This rank's half of the batch masked; every rank's masks gathered in batch order."""
    cams, erased = cams_and_erased()
    share = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    mask = class_activation_mask(cams[share], erased[share], SIZE, "batch", gather_max=gather)
    parts = [torch.empty_like(mask) for _ in range(WORLD)]
    dist.all_gather(parts, mask)
    return torch.cat(parts)


def ddp_masks(tmp_path, gather: bool) -> torch.Tensor:
    return on_gloo_ranks(rank_masks, gather, world=WORLD, tmp_path=tmp_path)


def test_the_gathered_maximum_gives_the_whole_batch_masks(tmp_path):
    cams, erased = cams_and_erased()
    whole = by_hand(cams, erased)
    torch.testing.assert_close(ddp_masks(tmp_path, gather=True), whole)
    local = ddp_masks(tmp_path, gather=False)
    per_rank = torch.cat([by_hand(cams[:2], erased[:2]), by_hand(cams[2:], erased[2:])])
    torch.testing.assert_close(local, per_rank)
    assert (local - whole).abs().max() > 0.1
