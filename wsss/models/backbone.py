"""timm backbones as multi-stage feature extractors with a chosen output stride.

`Backbone(name)` returns the feature maps of every stage (shallow to deep) so that the
CAM head, DeepLabV3+ (low-level + last), AffinityNet (several stages) and C²AM (two
stages) all take what they need from the same object.
"""
from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from torch import nn

from wsss import weights
from wsss.models.checkpoints import load_checkpoint, state_dict_of
from wsss.timm_names import timm_name

log = logging.getLogger(__name__)

# Architectures whose timm implementation accepts `output_stride` (dilated last stages).
DILATABLE = ("resnet", "resnest", "efficientnet")

# Stages returned, from stride 4 to the deepest: the stem (stride 2) is never used by a head. VGG16-GAP ends at
# block5_pool (timm `features.30`, stride 32, 7×7 at 224 px) as in the MinMax-CAM notebooks; timm's pre-logits
# ConvMlp after it is not part of that classifier.
OUT_INDICES = {"vgg": (2, 3, 4, 5)}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """Feature pyramid of a timm model.

    Args:
        name: short name (see wsss.timm_names.TIMM_NAMES) or any timm id.
        pretrained: load ImageNet weights through timm, from the hub cache when there (wsss/weights.py).
        weights_path: a local state dict to load instead (offline clusters).
        output_stride: 32, 16 or 8 for architectures that allow dilation; None keeps the native stride.
        in_chans: input channels (4 for HPA); timm adapts the first convolution.
        stages: how many stages to return, counted from the deepest (None = all).
    """

    def __init__(self, name: str, pretrained: bool = True, weights_path: str | None = None,
                 output_stride: int | None = 16, in_chans: int = 3, drop_path_rate: float = 0.0):
        super().__init__()
        self.name = name
        tid = timm_name(name)
        pretrained = pretrained and not weights_path
        kwargs = dict(features_only=True, pretrained=pretrained, in_chans=in_chans,
                      out_indices=OUT_INDICES.get(tid.split("_")[0].rstrip("0123456789"), (1, 2, 3, 4)))
        cached = weights.local_weights(name) if pretrained else None  # a clear error where none can come
        if cached:
            kwargs["pretrained_cfg_overlay"] = {"file": str(cached)}
        if output_stride and output_stride != 32:
            if not any(tid.startswith(p) for p in DILATABLE):
                raise ValueError(f"backbone.output_stride={output_stride} is not supported by {name!r} "
                                 f"(only {', '.join(DILATABLE)} can be dilated); use output_stride=null")
            kwargs["output_stride"] = output_stride
        if drop_path_rate:
            kwargs["drop_path_rate"] = drop_path_rate
        try:
            self.body = timm.create_model(tid, **kwargs)
        except Exception as e:
            if pretrained and weights.is_download_error(e):
                raise weights.download_failed(name, e) from None
            raise
        if weights_path:
            self.load_weights(weights_path)
        info = self.body.feature_info
        self.channels: list[int] = list(info.channels())
        self.reductions: list[int] = list(info.reduction())
        cfg = getattr(self.body, "pretrained_cfg", {}) or {}
        self.mean = tuple(cfg.get("mean", IMAGENET_MEAN))
        self.std = tuple(cfg.get("std", IMAGENET_STD))

    @property
    def out_channels(self) -> int:
        return self.channels[-1]

    @property
    def stride(self) -> int:
        return self.reductions[-1]

    def load_weights(self, path: str | Path) -> None:
        if str(path).endswith(".safetensors"):  # the file the hub serves for timm models
            from safetensors.torch import load_file

            if not Path(path).is_file():
                raise FileNotFoundError(f"backbone.weights_path={str(path)!r} does not exist")

            state = load_file(str(path), device="cpu")
        else:
            state = state_dict_of(load_checkpoint(path, "backbone.weights_path"))
        missing, unexpected = self.body.load_state_dict(state, strict=False)
        loaded = len(self.body.state_dict()) - len(missing)
        if loaded == 0:
            raise ValueError(f"{path}: no tensor matches the parameters of backbone {self.name!r}")
        log.info("loaded %d tensors from %s (%d missing, %d unexpected)", loaded, path, len(missing),
                 len(unexpected))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.body(x)
