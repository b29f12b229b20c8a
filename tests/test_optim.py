"""The parameter groups and the poly schedule that every training stage really uses (wsss/optim.py)."""
import pytest
import torch
from torch import nn

from wsss.optim import param_groups, poly_factor, sgd_poly


def _nets():
    torch.manual_seed(0)
    pretrained = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4))
    new = nn.Conv2d(4, 2, 1, bias=True)
    pretrained[1].bias.requires_grad_(False)  # a frozen parameter is in no group
    return pretrained, new


def test_groups_multipliers_and_weight_decay():
    # thesis-code get_optimizer: pretrained weights x1 (wd), pretrained biases x2 (no wd), new weights x10
    # (wd), new biases x20 (no wd); BatchNorm gamma counts as a weight, beta as a bias.
    pretrained, new = _nets()
    groups = param_groups([pretrained], [new], lr=0.1, weight_decay=1e-4)
    by_params = {tuple(id(p) for p in g["params"]): (g["lr"], g["weight_decay"]) for g in groups}
    assert by_params == {
        (id(pretrained[0].weight), id(pretrained[1].weight)): (pytest.approx(0.1), 1e-4),
        (id(pretrained[0].bias),): (pytest.approx(0.2), 0.0),
        (id(new.weight),): (pytest.approx(1.0), 1e-4),
        (id(new.bias),): (pytest.approx(2.0), 0.0),
    }


def test_poly_sequence_holds_after_the_last_step():
    # thesis code PolyOptimizer: T=10, lr0=0.1, power 0.9; after T steps the lr keeps its last value.
    expected = [0.1, 0.090953, 0.081805, 0.072542, 0.063145, 0.053589, 0.043838, 0.033838, 0.023492,
                0.012589, 0.012589, 0.012589]
    assert [0.1 * poly_factor(t, 10) for t in range(12)] == pytest.approx(expected, abs=1e-6)
    assert poly_factor(4, 8, power=2.0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="step must be >= 0"):
        poly_factor(-1, 10)


def test_sgd_poly_steps_every_group_by_hand():
    # Two plain-SGD steps (momentum 0, as upstream): w <- w - lr_g * f(t) * (grad + wd_g * w).
    pretrained, new = _nets()
    groups = param_groups([pretrained], [new], lr=0.1, weight_decay=1e-2)
    opt, sched = sgd_poly(groups, total_steps=4, power=0.9)
    x = torch.randn(2, 3, 5, 5)
    for t in range(2):
        before = {p: p.detach().clone() for g in groups for p in g["params"]}
        opt.zero_grad()
        new(pretrained(x)).square().mean().backward()
        grads = {p: p.grad.detach().clone() for p in before}
        opt.step()
        sched.step()
        for g in groups:
            base = g["initial_lr"]
            for p in g["params"]:
                want = before[p] - base * poly_factor(t, 4) * (grads[p] + g["weight_decay"] * before[p])
                torch.testing.assert_close(p.detach(), want)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([g["initial_lr"] * poly_factor(2, 4)
                                                                   for g in opt.param_groups])
