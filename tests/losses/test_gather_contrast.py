"""C²AM's contrast (Eq. 7) under DDP pairs the images of every device, as the thesis code's DataParallel did on
its gathered batch: two gloo ranks with half a batch each give the parameters exactly the gradient of one
process holding the whole batch (and without the gather they do not)."""
import pytest
import torch
import torch.distributed as dist

from tests.gloo_ranks import on_gloo_ranks
from wsss.distributed import gather_rows
from wsss.losses.ccam import contrastive_terms

WORLD, BATCH, DIM = 2, 8, 6


def batch_and_weights():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 5, generator=g)
    return x, torch.randn(5, DIM, generator=g), torch.randn(5, DIM, generator=g)


def contrast_gradient(x, w_fg, w_bg, gather: bool):
    w_fg, w_bg = w_fg.clone().requires_grad_(), w_bg.clone().requires_grad_()
    fg, bg = (x @ w_fg).relu(), (x @ w_bg).relu()  # the (B, C) foreground / background vectors
    if gather:
        fg, bg = gather_rows(fg), gather_rows(bg)
    contrastive_terms(fg, bg).total.backward()
    return torch.cat([w_fg.grad.flatten(), w_bg.grad.flatten()])


def rank_gradient(rank: int, gather: bool) -> torch.Tensor:
    """The parameters' gradient DDP applies when each rank holds half the batch."""
    x, w_fg, w_bg = batch_and_weights()
    share = BATCH // WORLD
    grad = contrast_gradient(x[rank * share:(rank + 1) * share], w_fg, w_bg, gather)
    dist.all_reduce(grad)
    return grad / WORLD  # DDP averages the ranks' parameter gradients


def ddp_gradient(tmp_path, gather: bool) -> torch.Tensor:
    return on_gloo_ranks(rank_gradient, gather, world=WORLD, tmp_path=tmp_path)


def test_gathered_contrast_gives_the_whole_batch_gradient(tmp_path):
    whole = contrast_gradient(*batch_and_weights(), gather=False)  # one process, all 8 images
    torch.testing.assert_close(ddp_gradient(tmp_path, gather=True), whole, rtol=1e-5, atol=1e-6)
    local = ddp_gradient(tmp_path, gather=False)  # each device contrasting its own 4 images
    assert (local - whole).abs().max() > 1e-3


def test_one_process_is_left_alone():
    x = torch.randn(3, 4)
    assert gather_rows(x) is x


@pytest.mark.parametrize("gather", [True, False])
def test_the_ccam_stage_contrasts_the_gathered_batch(tmp_path, data_dir, monkeypatch, gather):
    """`stage.gather_contrast` routes the stage's fg / bg vectors through gather_rows (its default: true)."""
    from omegaconf import OmegaConf

    import wsss.stages.ccam as ccam
    from tests.helpers import compose_config

    seen = []
    monkeypatch.setattr(ccam, "gather_rows", lambda x: seen.append(x.shape) or x)
    cfg = compose_config(tmp_path / "run", data_dir, ["stage=ccam", f"stage.gather_contrast={gather}"])
    module = ccam.CCAMStage(OmegaConf.to_container(cfg, resolve=True))
    module.compute_loss({"image": torch.randn(2, 3, 64, 64)})
    assert len(seen) == (2 if gather else 0) and all(shape[0] == 2 for shape in seen)
