"""Read a ResNet-style stem's output from a timm `Backbone` that does not return it.

IRN's AffinityNet and PoolNet (the thesis code's versions) both use the stem: AffinityNet after its
max-pool (stride 4), PoolNet before it (stride 2). `Backbone` returns layer1..layer4 only, so a forward
hook keeps the output of the named stem module for one forward.
"""
from __future__ import annotations

import torch
from torch import nn


def _keep_output(module: nn.Module, _inputs, output: torch.Tensor) -> None:
    # a plain function (not a closure): deep copies and pickles of the network keep working
    module.kept_output = output


class StemTap:
    """Keeps the output of `backbone.body.<name>` ("maxpool": stride 4, "act1": stride 2) at every forward.

    `channels` is the stem's width (64 for ResNet-50, 128 for ResNeSt-269's deep stem)."""

    def __init__(self, backbone: nn.Module, name: str, key: str):
        body = getattr(backbone, "body", None)
        module, norm = getattr(body, name, None), getattr(body, "bn1", None)
        if module is None or norm is None:
            raise ValueError(f"backbone {getattr(backbone, 'name', '?')!r} has no ResNet-style stem (bn1 + "
                             f"{name}); set {key}=false")
        module.register_forward_hook(_keep_output)
        self.name = name
        self.channels = int(norm.num_features)

    def take(self, backbone: nn.Module) -> torch.Tensor:
        """The stem output of the last forward (released afterwards: no activation is held between steps)."""
        module = getattr(backbone.body, self.name)
        out, module.kept_output = module.kept_output, None
        return out
