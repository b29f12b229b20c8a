"""RandAugment as the thesis code's RandAugmentMC(2, 10) with the FixMatch pool (tools/ai/randaugment.py
of lucasdavid/PNOC@f250e0d): op strengths, PIL enhance factors, masks following the geometry."""
import random

import numpy as np
import pytest
from PIL import Image

from wsss.data.transforms import (RANDAUGMENT_OPS, RandAugment, apply_op, enhance_factor, posterize_bits,
                                  solarize_threshold, train_transform)


def test_op_strengths_by_hand():
    # v in 1..9: factor v * 0.9 / 10 + 0.05, posterize int(v * 4 / 10) + 4 bits, solarize 256 - int(v * 25.6)
    assert [round(enhance_factor(v), 4) for v in range(1, 10)] == [0.14, 0.23, 0.32, 0.41, 0.5, 0.59, 0.68,
                                                                      0.77, 0.86]
    assert [posterize_bits(v) for v in range(1, 10)] == [4, 4, 5, 5, 6, 6, 6, 7, 7]
    assert [solarize_threshold(v) for v in (1, 5, 9)] == [231, 128, 26]


@pytest.mark.parametrize("v", [1, 5, 9])
def test_photometric_ops_only_darken_desaturate_or_flatten(v):
    f = enhance_factor(v)
    grey = Image.fromarray(np.full((8, 8, 3), 200, np.uint8))
    assert np.asarray(apply_op("brightness", grey, v)).mean() == pytest.approx(200 * f, abs=1)
    two_tone = np.zeros((8, 8, 3), np.uint8)
    two_tone[:, :4] = 40
    two_tone[:, 4:] = 200
    out = np.asarray(apply_op("contrast", Image.fromarray(two_tone), v)).astype(float)
    # PIL contrast blends with the mean grey level (L of the image, 120): spread shrinks by f
    assert out[0, 6, 0] - out[0, 0, 0] == pytest.approx(160 * f, abs=2)
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 255
    sat = np.asarray(apply_op("color", Image.fromarray(colour), v)).astype(float)
    assert sat[..., 0].mean() < 255 and sat[..., 1].mean() > 0  # towards grey, never beyond it


def test_geometric_ops_move_the_mask_with_the_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (20, 30, 3), dtype=np.uint8)
    mask = image[..., 0].copy()
    t = RandAugment(n=1, magnitude=10, cutout=4)
    for op in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y"):
        for sign in (-1, 1):
            ops = [(op, 7, sign)]
            out_image = t.apply(image, ops=ops, box=(3, 5, 7, 9))
            out_mask = t.apply_to_mask(mask, ops=ops, box=(3, 5, 7, 9))
            moved = out_mask != 255
            assert 0 < moved.sum() < mask.size
            np.testing.assert_array_equal(out_mask[moved], out_image[..., 0][moved])
            assert (out_image[~moved] == 0).all()
            assert (out_image[5:10, 3:8] == 0).all()  # the black cutout box, corners included
    # translate_x at v=5 moves content by int(0.15 * 30) = 4 pixels
    shifted = t.apply_to_mask(mask, ops=[("translate_x", 5, 1)], box=None)
    np.testing.assert_array_equal(shifted[:, :26], mask[:, 4:])
    assert (shifted[:, 26:] == 255).all()


def test_photometric_ops_leave_the_mask_alone():
    mask = np.arange(64, dtype=np.uint8).reshape(8, 8)
    t = RandAugment()
    for op in set(RANDAUGMENT_OPS) - {"rotate", "shear_x", "shear_y", "translate_x", "translate_y"}:
        np.testing.assert_array_equal(t.apply_to_mask(mask, ops=[(op, 9, 1)], box=None), mask)


def test_draws_two_ops_with_strength_below_m_each_half_the_time():
    t = RandAugment(n=2, magnitude=10)
    t.set_random_seed(0)
    applied, strengths = 0, set()
    for _ in range(2000):
        params = t.get_params_dependent_on_data({"shape": (32, 32, 3)}, {})
        applied += len(params["ops"])
        strengths |= {v for _, v, _ in params["ops"]}
        x0, y0, x1, y1 = params["box"]
        assert 0 < x1 - x0 <= 16 and 0 < y1 - y0 <= 16
    assert strengths == set(range(1, 10))
    assert applied / 4000 == pytest.approx(0.5, abs=0.03)


def test_in_the_train_pipeline_image_and_mask_stay_aligned():
    random.seed(0)
    image = np.random.default_rng(1).integers(0, 250, (40, 48, 3), dtype=np.uint8)
    tf = train_transform(32, 48, 48, (0, 0, 0), (1, 1, 1), hflip=False, randaugment=True)
    tf.set_random_seed(3)
    for _ in range(10):
        out = tf(image=image, mask=np.zeros((40, 48), np.uint8))
        assert out["image"].shape == (3, 32, 32) and out["mask"].shape == (32, 32)
    with pytest.raises(ValueError, match="randaugment_m"):
        RandAugment(n=2, magnitude=11)


def test_cutout_is_the_box_pil_draws():
    """Upstream CutoutAbs draws `ImageDraw.rectangle((x0, y0, x1, y1))`, both corners included: 17 x 17 for
    v = 16 inside the image, clipped at the border (lucasdavid/PNOC@f250e0d:tools/ai/randaugment.py:47-65)."""
    from PIL import Image, ImageDraw

    t = RandAugment(n=1, magnitude=10)
    image = np.full((40, 50, 3), 200, dtype=np.uint8)
    for box in [(10, 12, 26, 28), (40, 30, 50, 40), (0, 0, 16, 16)]:
        reference = Image.fromarray(image)
        ImageDraw.Draw(reference).rectangle(box, (0, 0, 0))
        np.testing.assert_array_equal(t.apply(image, ops=[], box=box), np.asarray(reference))
    assert (t.apply(image, ops=[], box=(10, 12, 26, 28)) == 0).all(-1).sum() == 17 * 17
