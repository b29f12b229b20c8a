"""Parameter groups with the upstream learning-rate multipliers and the polynomial schedule.

Groups (lucasdavid/PNOC@f250e0d:core/networks.py, get_parameter_groups): pretrained weights ×1, pretrained
biases ×2 (no weight decay), new weights ×10, new biases ×20 (no weight decay). A "bias" is any parameter
whose name does not contain "weight" (so BatchNorm β is a bias and γ a weight, as upstream).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def param_groups(pretrained: Iterable[nn.Module], new: Iterable[nn.Module], lr: float, weight_decay: float,
                 alpha_bias: float = 2.0, alpha_new: float = 10.0) -> list[dict]:
    groups = []
    for modules, scale in ((pretrained, 1.0), (new, alpha_new)):
        weights, biases = [], []
        for module in modules:
            for name, p in module.named_parameters():
                if p.requires_grad:
                    (weights if "weight" in name else biases).append(p)
        groups.append({"params": weights, "lr": lr * scale, "weight_decay": weight_decay})
        groups.append({"params": biases, "lr": lr * scale * alpha_bias, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def poly_factor(step: int, total: int, power: float = 0.9) -> float:
    """`(1 − t/T)^power` for optimiser step `t` (0-based) of `T`. Steps past the end keep the last value
    `(1/T)^power` instead of reaching 0, as the thesis code's PolyOptimizer (it stops updating the lr once
    `t >= T`): T=10, lr 0.1 -> 0.1, 0.090953, ..., 0.012589, 0.012589."""
    if step < 0:
        raise ValueError(f"poly schedule: step must be >= 0 (0-based optimiser step), got {step}")
    total = max(1, total)
    return (1.0 - min(step, total - 1) / total) ** power


def sgd_poly(groups: list[dict], total_steps: int, momentum: float = 0.0, nesterov: bool = False,
             power: float = 0.9):
    opt = torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum, nesterov=nesterov and momentum > 0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: poly_factor(s, total_steps, power))
    return opt, sched
