"""C²AM-H saliency inference as the thesis code
(lucasdavid/PNOC@f250e0d:scripts/ccam/inference.py:91-100,119): each scale is the uint8 image resized with PIL bicubic, the maps are upsampled to 16·⌈H/16⌉ × 16·⌈W/16⌉ and
cropped, in float32 even under the trainer's autocast."""
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from wsss.stage_schema import stage_settings
from wsss.stages.ccam import CCAMStage

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Recorder:
    def __init__(self):
        self.written = {}

    def write_npz(self, image_id, **arrays):
        self.written[image_id] = arrays["saliency"]


def run_predict(pixels: np.ndarray, **inference):
    autocast_seen = []

    def logits(x):   # the red channel as the foreground logit
        autocast_seen.append(torch.is_autocast_enabled("cpu"))
        return x[:, :1] * 2.0

    stage = SimpleNamespace(scfg=stage_settings("ccam", {"inference": {"scales": [0.5], "flip": False, **inference}}),
                            trainer=SimpleNamespace(datamodule=SimpleNamespace(mean=MEAN, std=STD)),
                            device=torch.device("cpu"), dtype=torch.float32, writer=Recorder(),
                            saliency_logits=logits)
    unit = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    image = (unit - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        CCAMStage.predict_step(stage, {"image": image, "id": ["a"]}, 0)
    return stage.writer.written["a"], autocast_seen


def reference(pixels: np.ndarray) -> np.ndarray:
    """PIL bicubic to half size, normalise, logit, ReLU, bilinear to 32 x 32, crop to 20 x 28, / max (a float
    map, as the thesis code's np.save of hr_cam)."""
    small = np.asarray(Image.fromarray(pixels).resize((14, 10), Image.BICUBIC)).astype(np.float64) / 255
    red = torch.from_numpy((small[..., 0] - MEAN[0]) / STD[0] * 2.0)[None, None].float()
    up = F.interpolate(F.relu(red), size=(32, 32), mode="bilinear", align_corners=False)[0, 0, :20, :28]
    return (up / (up.max() + 1e-5)).numpy()


def test_ccam_inference_follows_the_thesis_code():
    pixels = np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    got, autocast_seen = run_predict(pixels)
    assert autocast_seen == [False]    # fp32 although the trainer's autocast is on
    want = reference(pixels)
    assert np.abs(got.astype(np.float32) - want).max() <= 1 / 255
    # the former path (bilinear on the normalised tensor, straight upsampling) is another map
    old, _ = run_predict(pixels, image_resize="bilinear", upsample_stride=1, fp32=False)
    assert np.abs(old.astype(np.float32) - want).max() > 5 / 255
