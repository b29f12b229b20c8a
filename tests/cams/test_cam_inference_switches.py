"""The thesis code's CAM inference (scripts/cam/inference.py @ f250e0d): PIL bicubic resize of the uint8
image, maps upsampled to 16*ceil(H/16) then cropped, float32 forward."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from wsss.cams.inference import inference_precision, multiscale_cams, multiscale_cams_and_seeds, pil_bicubic_resize

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalise(pixels: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(pixels).permute(2, 0, 1).double() / 255.0
    return ((x - torch.tensor(MEAN, dtype=torch.float64)[:, None, None])
            / torch.tensor(STD, dtype=torch.float64)[:, None, None]).float()[None]


def test_scales_are_pil_bicubic_resizes_of_the_uint8_image():
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    seen = []

    def cam_fn(x):
        seen.append(x)
        return torch.ones(x.shape[0], 2, 3, 4)

    multiscale_cams(cam_fn, normalise(pixels), scales=(0.5,), flip=True, image_resize="pil_bicubic",
                    mean=MEAN, std=STD)
    expected = normalise(np.asarray(Image.fromarray(pixels).resize((15, 10), Image.BICUBIC)))[0]
    torch.testing.assert_close(seen[0][0], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(seen[0][1], expected.flip(-1), atol=1e-5, rtol=0)
    bilinear = F.interpolate(normalise(pixels), size=(10, 15), mode="bilinear", align_corners=False)[0]
    assert (bilinear - expected).abs().max() > 0.05  # the switch matters
    with pytest.raises(ValueError, match="mean and std"):
        multiscale_cams(cam_fn, normalise(pixels), image_resize="pil_bicubic")


def test_pil_resize_recovers_the_uint8_levels():
    pixels = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    torch.testing.assert_close(pil_bicubic_resize(normalise(pixels), (8, 8), MEAN, STD), normalise(pixels),
                               atol=1e-6, rtol=0)


def test_maps_are_upsampled_to_a_multiple_of_16_then_cropped():
    # 20 x 24 image: the maps (2 x 2 here) go to 32 x 32, then the top-left 20 x 24 is kept.
    raw = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])
    cams = multiscale_cams(lambda x: raw.expand(x.shape[0], -1, -1, -1), torch.zeros(1, 3, 20, 24),
                           scales=(1.0,), flip=False, upsample_stride=16)
    expected = F.interpolate(raw, size=(32, 32), mode="bilinear", align_corners=False)[..., :20, :24]
    torch.testing.assert_close(cams, expected)
    direct = multiscale_cams(lambda x: raw, torch.zeros(1, 3, 20, 24), scales=(1.0,), flip=False)
    assert (direct - expected).abs().max() > 0.1


def test_fp32_switch_turns_autocast_off():
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
        with inference_precision("cpu", fp32=True):
            assert layer(x).dtype == torch.float32
        with inference_precision("cpu", fp32=False):
            assert layer(x).dtype == torch.bfloat16


def test_stride4_seeds_are_every_scales_maps_on_the_stride4_grid():
    # thesis code: cams_st = sum over scales of resize(flip-summed maps, ceil(H/4) x ceil(W/4))
    raw = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])
    fn = lambda x: raw.expand(x.shape[0], -1, -1, -1)  # noqa: E731
    _, seeds = multiscale_cams_and_seeds(fn, torch.zeros(1, 3, 18, 24), scales=(0.5, 1.0), flip=True)
    one = F.interpolate(raw + raw.flip(-1), size=(5, 6), mode="bilinear", align_corners=False)  # image + mirror
    torch.testing.assert_close(seeds, 2 * one)
    assert multiscale_cams_and_seeds(fn, torch.zeros(1, 3, 18, 24), seeds=False)[1] is None


def stride16_cams(x: torch.Tensor) -> torch.Tensor:
    """A stand-in network of stride 16: the mean of the first channel over each 16 x 16 cell, the last row and
    column of cells covering what is left (a grid that starts at the image's top-left corner)."""
    return F.avg_pool2d(x[:, :1], 16, stride=16, ceil_mode=True)


@pytest.mark.parametrize("width", [40, 41, 47, 48])
def test_flip_merge_image_maps_of_a_mirrored_image_are_the_mirrored_maps(width):
    # the mirror's grid starts at the image's right edge: flipped back on the grid (the thesis code) it lands
    # 16*ceil(W/16) - W pixels off once upsampled and cropped; flipped back after the crop it lines up
    x = torch.zeros(1, 3, 24, width)
    x[..., 5:15, 3:13] = 1.0
    for merge, equivariant in (("image", True), ("grid", width % 16 == 0)):
        def cams(v):
            return multiscale_cams(stride16_cams, v, scales=(1.0,), flip=True, upsample_stride=16,
                                   flip_merge=merge)
        gap = (cams(x.flip(-1)) - cams(x).flip(-1)).abs().max()
        assert (gap < 1e-6) == equivariant, (merge, float(gap))


def test_flip_merge_image_is_each_view_upsampled_cropped_then_flipped_back():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 20, 37)
    got = multiscale_cams(stride16_cams, x, scales=(1.0,), flip=True, upsample_stride=16, flip_merge="image")
    def placed(v):
        maps = F.relu(stride16_cams(v))
        return F.interpolate(maps, size=(32, 48), mode="bilinear", align_corners=False)[..., :20, :37]
    torch.testing.assert_close(got, placed(x) + placed(x.flip(-1)).flip(-1))
    with pytest.raises(ValueError, match="flip_merge='late'"):
        multiscale_cams(stride16_cams, x, flip_merge="late")


@pytest.mark.parametrize("experiment", ["voc12_rs269_pf", "voc12_rs269_occse", "voc12_rs269_poc",
                                        "voc12_rs269_pnoc_ls"])
def test_thesis_recipes_place_maps_as_the_thesis_code(experiment, tmp_path):
    from tests.helpers import compose_config

    cfg = compose_config(tmp_path / "run", tmp_path / "data", [f"experiment={experiment}"], tiny=False)
    inf = cfg.stage.inference
    assert (inf.image_resize, inf.upsample_stride, inf.flip_merge) == ("pil_bicubic", 16, "grid")


def test_stage_default_places_maps_straight_on_the_image(tmp_path):
    # 16*ceil(H/16) upsampling shifts every map by up to a cell on sides that are not multiples of 16
    # (tests/stages/test_cams_on_varying_sizes.py): the default is the straight resize, the recipes keep 16
    from tests.helpers import compose_config

    inf = compose_config(tmp_path / "run", tmp_path / "data", ["stage=classifier"]).stage.inference
    assert (inf.upsample_stride, inf.flip_merge) == (1, "image")
