"""Saliency TTA and the threshold + CRF pseudo-saliency."""
import numpy as np
import torch

from wsss.saliency.inference import multiscale_saliency, to_uint8
from wsss.saliency.pseudo import binarize, pseudo_saliency_map


def test_relu_saliency_is_flip_invariant_and_peaks_at_one():
    x = torch.randn(2, 3, 8, 10)
    fn = lambda im: im[:, :1] - 0.2  # noqa: E731  (a flip-equivariant "network")
    sal = multiscale_saliency(fn, x, scales=(1.0,), flip=True, activation="relu")
    expected = torch.relu(x[:, 0] - 0.2)
    expected = expected / expected.flatten(1).amax(1)[:, None, None]
    assert torch.allclose(sal, expected, atol=1e-4)
    assert torch.allclose(sal.flatten(1).amax(1), torch.ones(2), atol=1e-4)


def test_sigmoid_saliency_is_the_mean_over_views():
    x = torch.randn(1, 3, 6, 6)
    fn = lambda im: im[:, :1] * torch.linspace(-1, 1, im.shape[-1])  # noqa: E731  (not flip-equivariant)
    sal = multiscale_saliency(fn, x, scales=(1.0,), flip=True, activation="sigmoid")
    a = torch.sigmoid(fn(x))[:, 0]
    b = torch.sigmoid(fn(x.flip(-1))).flip(-1)[:, 0]
    assert torch.allclose(sal, (a + b) / 2, atol=1e-6)


def test_uint8_rounds_to_the_nearest_level():
    s = torch.tensor([[0.0, 0.5, 1.0]])
    png = to_uint8(s)
    assert png.tolist() == [[0, 128, 255]]


def test_binarize_is_strict():
    assert binarize(np.array([[0.2, 0.2001, 0.1]]), 0.2).tolist() == [[0, 1, 0]]


def test_pseudo_saliency_threshold_crf_and_empty_label():
    image = np.zeros((20, 20, 3), np.uint8)
    image[5:15, 5:15] = 200  # a bright square: the CRF keeps the square
    sal = np.full((20, 20), 0.04, np.float32)
    sal[5:15, 5:15] = 0.94
    sal[0, 0] = 0.94  # an isolated speck on a flat background: the CRF removes it
    out = pseudo_saliency_map(image, sal, True, threshold=0.2, crf_iterations=10, gt_prob=0.7)
    expected = np.zeros((20, 20), np.uint8)
    expected[5:15, 5:15] = 255
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    no_crf = pseudo_saliency_map(image, sal, True, threshold=0.2, crf_iterations=0)
    assert no_crf[0, 0] == 255 and set(np.unique(no_crf)) == {0, 255}
    assert not pseudo_saliency_map(image, sal, False).any()
