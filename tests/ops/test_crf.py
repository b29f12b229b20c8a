"""Dense CRF wrapper: unaries, normalisation, fixed points, edge snapping, pool == inline."""
import functools

import numpy as np
import pytest
from pydensecrf.utils import unary_from_labels, unary_from_softmax

from wsss.ops import crf
from wsss.ops.crf import LABEL_CRF, PSA_SOFTMAX_CRF, crf_labels, crf_labels_many, crf_probabilities
from wsss.ops.pool import pool_imap


def two_colour_image(height=60, width=80, split=40):
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :split] = (200, 30, 30)
    image[:, split:] = (20, 40, 210)
    truth = np.zeros((height, width), np.int64)
    truth[:, split:] = 1
    return image, truth


def test_label_unary_matches_pydensecrf_and_reference_values():
    labels = np.array([[0, 1], [1, 0]])
    ours = crf._label_unary(labels, 2, 0.7)
    np.testing.assert_allclose(ours, unary_from_labels(labels, 2, 0.7, zero_unsure=False), rtol=1e-6)
    np.testing.assert_allclose(ours[:, 0], [0.3567, 1.2040], atol=1e-4)   # R1
    probs = np.array([0.25, 0.75], np.float32).reshape(2, 1, 1)
    np.testing.assert_allclose(crf._prob_unary(probs)[:, 0], [1.3863, 0.2877], atol=1e-4)
    np.testing.assert_allclose(crf._prob_unary(probs), unary_from_softmax(probs), rtol=1e-6)


def test_probabilities_stay_normalised():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    logits = rng.normal(size=(4, 30, 40))
    probs = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    for params in (crf.DEEPLAB_V2_CRF, PSA_SOFTMAX_CRF):
        out = crf_probabilities(image, probs, iterations=5, params=params)
        assert out.shape == (4, 30, 40) and out.dtype == np.float32
        np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)
        assert (out >= 0).all()


def test_confident_uniform_image_is_unchanged():
    image = np.full((32, 48, 3), 128, np.uint8)
    labels = np.full((32, 48), 2)
    np.testing.assert_array_equal(crf_labels(image, labels, n_labels=3), labels)
    probs = np.full((3, 32, 48), 0.01, np.float32)
    probs[2] = 0.98
    out = crf_probabilities(image, probs)
    assert (out.argmax(0) == 2).all()
    assert (out[2] >= 0.98 - 1e-6).all()   # the smoothness terms only reinforce a constant labelling


def test_label_crf_snaps_noisy_labels_to_the_colour_edge():
    image, truth = two_colour_image()
    rng = np.random.default_rng(1)
    noisy = np.zeros_like(truth)
    noisy[:, 48:] = 1                                   # boundary 8 px off the colour edge
    flip = rng.random(truth.shape) < 0.05
    noisy[flip] = 1 - noisy[flip]
    assert (noisy == truth).mean() < 0.9
    out = crf_labels(image, noisy, n_labels=2, iterations=10, gt_prob=0.7, params=LABEL_CRF)
    assert (out == truth).mean() >= 0.99


def test_small_island_without_colour_support_is_erased():
    image = np.full((40, 50, 3), 128, np.uint8)
    labels = np.zeros((40, 50), np.int64)
    labels[18:22, 20:24] = 1
    assert (crf_labels(image, labels, n_labels=2) == 0).all()   # R3


def test_single_label_and_bad_inputs():
    image = np.zeros((4, 5, 3), np.uint8)
    np.testing.assert_array_equal(crf_labels(image, np.zeros((4, 5), np.int64)), 0)
    with pytest.raises(ValueError, match="uint8"):
        crf_labels(image.astype(np.float32), np.zeros((4, 5), np.int64))
    with pytest.raises(ValueError, match="shape"):
        crf_labels(image, np.zeros((5, 5), np.int64))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        crf_labels(image, np.full((4, 5), 2), n_labels=2)
    with pytest.raises(ValueError, match="gt_prob"):
        crf_labels(image, np.zeros((4, 5), np.int64), gt_prob=1.0)


def test_pool_gives_the_inline_result():
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(5)]
    labels = [rng.integers(0, 3, (24, 32)) for _ in range(5)]
    inline = crf_labels_many(images, labels, [3] * 5, iterations=3, processes=1)
    pooled = crf_labels_many(images, labels, [3] * 5, iterations=3, processes=2)
    assert len(pooled) == 5
    for a, b in zip(inline, pooled):
        np.testing.assert_array_equal(a, b)
    # partials go through the pool as well
    fn = functools.partial(crf_labels, n_labels=3, iterations=2)
    items = list(enumerate(zip(images, labels)))
    for (i, a), (j, b) in zip(pool_imap(fn, items, processes=1), pool_imap(fn, items, processes=2)):
        assert i == j
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="processes"):
        list(pool_imap(fn, items, processes=0))


def test_softmax_unary_gt_prob_mixes_with_the_uniform():
    """crf_inference(img, p, gt_prob) upstream (lucasdavid/PNOC@f250e0d:tools/ai/demo_utils.py:74) builds the
    unary from gt_prob·p + (1 − gt_prob)/n; after 0 mean-field iterations the marginals are that distribution."""
    from wsss.ops.crf import crf_probabilities
    from wsss.segmentation.crf_pool import crf_params, label_map

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(4, 5)).transpose(2, 0, 1).astype(np.float32)
    image = rng.integers(0, 255, (4, 5, 3), dtype=np.uint8)
    mixed = 0.9 * probs + 0.1 / 3
    np.testing.assert_allclose(crf_probabilities(image, probs, 0, gt_prob=0.9), mixed, atol=1e-6)
    np.testing.assert_allclose(crf_probabilities(image, probs, 0), probs, atol=1e-6)
    np.testing.assert_allclose(crf._prob_unary(probs, 0.9), unary_from_softmax(probs, scale=0.9), rtol=1e-6)
    # the configuration reaches the label map: a pixel at (0.45, 0.55) vs a confident neighbourhood
    assert crf_params({"iterations": 1, "gt_prob": 0.9})[3] == pytest.approx(0.9)
    assert crf_params({"iterations": 1})[3] is None
    with pytest.raises(ValueError, match="gt_prob=1.5"):
        crf_probabilities(image, probs, 1, gt_prob=1.5)
    once = crf_probabilities(image, probs, 1, gt_prob=0.3)
    assert (label_map(probs, image, 1, gt_prob=0.3) == once.argmax(0)).all()
