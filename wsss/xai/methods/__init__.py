"""CAM methods, all labels of an image from one body forward; `REGISTRY` maps config names to classes, each
class found in its own module of this package by its `name` (no list to extend)."""
from __future__ import annotations

import importlib
import pkgutil

from wsss.xai.methods.ablationcam import AblationCAM
from wsss.xai.methods.base import (
    CamMethod,
    CamResult,
    minmax_normalize,
    parse_targets,
    postprocess,
    resize_maps,
)
from wsss.xai.methods.cam import CAM
from wsss.xai.methods.gradcam import GradCAM
from wsss.xai.methods.gradcampp import GradCAMPlusPlus
from wsss.xai.methods.layercam import LayerCAM
from wsss.xai.methods.minmax import DMinMaxCAM, DMinMaxGradCAM, MinMaxCAM, MinMaxGradCAM
from wsss.xai.methods.scorecam import ScoreCAM


def discovered_methods() -> dict[str, type[CamMethod]]:
    """Every named CamMethod of this package's modules, by name: a new method is its own module, nothing else."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    found: dict[str, type[CamMethod]] = {}
    pending = list(CamMethod.__subclasses__())
    while pending:
        cls = pending.pop(0)
        pending += cls.__subclasses__()
        if not cls.__module__.startswith(f"{__name__}.") or "name" not in vars(cls) or found.get(cls.name) is cls:
            continue
        if cls.name in found:
            raise ValueError(f"xai method name {cls.name!r} is taken by both {found[cls.name].__module__}."
                             f"{found[cls.name].__qualname__} and {cls.__module__}.{cls.__qualname__}")
        found[cls.name] = cls
    return dict(sorted(found.items()))


REGISTRY: dict[str, type[CamMethod]] = discovered_methods()


def build_method(name: str, **kwargs) -> CamMethod:
    """Instantiate a method by its registry name with its options."""
    if name not in REGISTRY:
        raise ValueError(f"xai method {name!r} is unknown; expected one of {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**kwargs)


__all__ = ["REGISTRY", "build_method", "CamMethod", "CamResult", "CAM", "GradCAM", "GradCAMPlusPlus",
           "ScoreCAM", "AblationCAM", "LayerCAM", "MinMaxCAM", "DMinMaxCAM", "MinMaxGradCAM",
           "DMinMaxGradCAM", "minmax_normalize", "parse_targets", "postprocess", "resize_maps"]
