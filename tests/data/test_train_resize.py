"""The train transforms' random long-side resize: `stage.augment.resize=pil_bicubic` is PIL's BICUBIC (the
thesis code's RandomResize), recomputed here with PIL on the same image; cv2_cubic is not antialiased."""
import numpy as np
import pytest
from PIL import Image

from wsss.data import transforms as T

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _image(h=150, w=200):
    rng = np.random.default_rng(0)
    checker = ((np.arange(h)[:, None] + np.arange(w)[None]) % 2 * 200).astype(np.uint8)  # 1 px checks
    image = np.repeat(checker[..., None], 3, axis=2)
    image[:, :, 1] = rng.integers(0, 256, (h, w))
    return image


def _resized(resize, image, mask, size):
    tf = T.longest_side_resize(size, size, resize)
    out = tf(image=image, mask=mask)
    return out["image"], out["mask"]


def test_pil_bicubic_equals_a_pil_resize_of_the_same_image():
    image, mask = _image(), (np.arange(150 * 200).reshape(150, 200) % 7).astype(np.uint8)
    got, got_mask = _resized("pil_bicubic", image, mask, 128)  # 200 -> 128: a 0.64x shrink
    w, h = 128, int(round(150 * 128 / 200))
    expected = np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))
    expected_mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))
    assert got.shape == (96, 128, 3)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got_mask, expected_mask)


def test_cv2_cubic_aliases_where_pil_bicubic_averages():
    image = _image()
    pil, _ = _resized("pil_bicubic", image, image[..., 0], 128)
    cv2_cubic, _ = _resized("cv2_cubic", image, image[..., 0], 128)
    # a 1 px checkerboard shrunk 0.64x: an antialiased resize is nearly flat grey, cv2 keeps a strong moiré
    assert pil[..., 0].std() < 0.5 * cv2_cubic[..., 0].std()
    assert np.abs(pil.astype(int) - cv2_cubic.astype(int)).mean() > 5


def test_long_side_drawn_in_range_and_aspect_kept():
    tf = T.longest_side_resize(100, 160, "pil_bicubic")
    sides = set()
    for _ in range(40):
        out = tf(image=_image(90, 120), mask=np.zeros((90, 120), np.uint8))["image"]
        sides.add(out.shape[1])
        assert out.shape[0] == int(round(90 * (out.shape[1] / 120)))  # the thesis code: round(h * scale)
    assert min(sides) >= 100 and max(sides) <= 160 and len(sides) > 10


def test_unknown_resize_is_named():
    with pytest.raises(ValueError, match="stage.augment.resize='area'"):
        T.train_transform(64, 56, 80, MEAN, STD, resize="area")


# the recipes that train with the random resize (the others inherit one of these)
THESIS_TRAINING_RECIPES = ("voc12_rs269_pf", "voc12_rs269_occse", "voc12_rs269_poc", "voc12_rs269_pnoc_ls",
                           "voc12_affinity_rs269", "voc12_deeplab_rs269")


@pytest.mark.parametrize("experiment", THESIS_TRAINING_RECIPES)
def test_thesis_recipes_resize_as_the_thesis_code(experiment, tmp_path):
    from tests.helpers import compose_config

    cfg = compose_config(tmp_path / "run", tmp_path / "data", [f"experiment={experiment}"], tiny=False)
    assert cfg.stage.augment.resize == "pil_bicubic"


def test_stage_default_is_cv2_cubic(tmp_path):
    from tests.helpers import compose_config

    cfg = compose_config(tmp_path / "run", tmp_path / "data", ["stage=classifier"])
    assert cfg.stage.augment.resize == "cv2_cubic"
