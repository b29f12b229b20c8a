"""Stage `classifier`: the multi-label CAM classifier (optionally with KUR, label smoothing and
RandAugment); also the ordinary classifier `oc` that OC-CSE, P-OC and P-NOC start from."""
from __future__ import annotations

from wsss.stages.cam import CAMStage


class ClassifierStage(CAMStage):
    """All behaviour is the CAM stage's: the multilabel soft-margin loss with smoothing."""
