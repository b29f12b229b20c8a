"""Multi-label XAI: CAM methods over a model split at the explained layer, and the MinMax-CAM metrics.

    model = SplitModel.from_cam_net(camnet)               # KUR weight and bias (if any) of a CAMNet
    maps = build_method("minmax_cam")(model, images, targets)        # (B, L, h, w)
"""
from wsss.xai.methods import REGISTRY, CamMethod, CamResult, build_method
from wsss.xai.metrics import MultiLabelCamMetrics, masked_probabilities, update_cam_metrics
from wsss.xai.split import GapLinearHead, SplitModel

__all__ = ["REGISTRY", "CamMethod", "CamResult", "build_method", "MultiLabelCamMetrics",
           "masked_probabilities", "update_cam_metrics", "GapLinearHead", "SplitModel"]
