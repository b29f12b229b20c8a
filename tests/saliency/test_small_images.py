"""The thesis code's PoolNet test on small images (poolnet/solver.py `test` @ f250e0d): an image with a side
<= 100 is doubled bilinearly (`F.interpolate(scale_factor=2)`), its logits resized back to H × W, then σ."""
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from tests.helpers import compose_config
from wsss.saliency.inference import doubled_small_image_saliency, multiscale_saliency, to_uint8


def logit_fn(x: torch.Tensor) -> torch.Tensor:
    """A position-dependent (B, 1, h, w) logit map at the input size, like PoolNet's output."""
    return 4 * x[:, :1] - 2 * x[:, 1:2] ** 2


def test_doubled_prediction_is_the_thesis_codes_formula():
    images = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(0))
    upstream = F.interpolate(images, scale_factor=2, mode="bilinear")
    upstream = torch.sigmoid(F.interpolate(logit_fn(upstream), size=(37, 53), mode="bilinear"))[:, 0]
    torch.testing.assert_close(doubled_small_image_saliency(logit_fn, images), upstream)
    # σ after the resize back: averaging σ of the doubled view (our multi-scale path at scale 2) differs
    assert (multiscale_saliency(logit_fn, images, (2.0,), False, "sigmoid") - upstream).abs().max() > 1e-3


class Pngs:
    def __init__(self):
        self.written = {}

    def write_png(self, image_id, png):
        self.written[image_id] = png


@pytest.mark.parametrize("small_side", [None, 100, 40])
def test_the_saliency_stage_doubles_images_with_a_small_side(tmp_path, data_dir, small_side):
    from wsss.stages.saliency import SaliencyStage

    cfg = compose_config(tmp_path / "run", data_dir, ["stage=saliency", "stage.level_channels=[16,16,16,16]",
                                                     f"stage.inference.double_small_side={small_side or 'null'}"])
    stage = SaliencyStage(OmegaConf.to_container(cfg, resolve=True)).eval()
    stage.writer = Pngs()
    images = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        stage.predict_step({"image": images, "id": ["small"]}, 0)
        doubled = to_uint8(doubled_small_image_saliency(stage.net, images)[0])
        single = to_uint8(multiscale_saliency(stage.net, images, (1.0,), False, "sigmoid")[0])
    expected = doubled if small_side == 100 else single  # 64 <= 100; 64 > 40
    assert (doubled != single).any()
    assert (stage.writer.written["small"] == expected).all()
