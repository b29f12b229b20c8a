"""CAM methods, all labels of an image from one body forward; `REGISTRY` maps config names to classes."""
from __future__ import annotations

from wsss.xai.methods.ablationcam import AblationCAM
from wsss.xai.methods.base import (CamMethod, CamResult, minmax_normalize, parse_targets, postprocess,
                                   resize_maps)
from wsss.xai.methods.cam import CAM
from wsss.xai.methods.gradcam import GradCAM
from wsss.xai.methods.gradcampp import GradCAMPlusPlus
from wsss.xai.methods.layercam import LayerCAM
from wsss.xai.methods.minmax import DMinMaxCAM, DMinMaxGradCAM, MinMaxCAM, MinMaxGradCAM
from wsss.xai.methods.scorecam import ScoreCAM

REGISTRY: dict[str, type[CamMethod]] = {
    "cam": CAM,
    "gradcam": GradCAM,
    "gradcampp": GradCAMPlusPlus,
    "scorecam": ScoreCAM,
    "ablationcam": AblationCAM,
    "layercam": LayerCAM,
    "minmax_cam": MinMaxCAM,
    "d_minmax_cam": DMinMaxCAM,
    "minmax_gradcam": MinMaxGradCAM,
    "d_minmax_gradcam": DMinMaxGradCAM,
}


def build_method(name: str, **kwargs) -> CamMethod:
    """Instantiate a method by its registry name with its options."""
    if name not in REGISTRY:
        raise ValueError(f"xai method {name!r} is unknown; expected one of {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**kwargs)


__all__ = ["REGISTRY", "build_method", "CamMethod", "CamResult", "CAM", "GradCAM", "GradCAMPlusPlus",
           "ScoreCAM", "AblationCAM", "LayerCAM", "MinMaxCAM", "DMinMaxCAM", "MinMaxGradCAM",
           "DMinMaxGradCAM", "minmax_normalize", "parse_targets", "postprocess", "resize_maps"]
