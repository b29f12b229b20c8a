"""The short backbone names of conf/backbone (`resnest269`) and the timm model ids they stand for."""
from __future__ import annotations

# Short names used in configs -> timm model ids.
TIMM_NAMES = {
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "resnest50": "resnest50d",
    "resnest101": "resnest101e",
    "resnest269": "resnest269e",
    "vgg16": "vgg16",
    "efficientnet_b6": "efficientnet_b6",
}


def timm_name(name: str) -> str:
    if name in TIMM_NAMES:
        return TIMM_NAMES[name]
    import timm

    if name in timm.list_models():
        return name
    known = ", ".join(sorted(TIMM_NAMES))
    raise ValueError(f"backbone.name={name!r} is not a known backbone; expected one of {known} or a timm model id")
