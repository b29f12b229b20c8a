import pytest
import torch

from wsss.losses.puzzle import (gap_logits, merge, puzzle_classification_loss, puzzle_losses,
                                reconstruction_loss, tile)

from .by_hand import mlsm_by_hand


def test_tile_order_matches_reference_example():
    # shjo-april/PuzzleCAM@659b4c1:core/puzzle_utils.py: tile-major stack [TL of all B, TR of all B, BL of all
    # B, BR of all B].
    x = torch.arange(32.0).view(2, 1, 4, 4)
    t = tile(x)
    assert t.shape == (8, 1, 2, 2)
    assert t[0, 0].tolist() == [[0, 1], [4, 5]]
    assert t[1, 0].tolist() == [[16, 17], [20, 21]]
    assert t[2, 0].tolist() == [[2, 3], [6, 7]]
    assert t[7, 0].tolist() == [[26, 27], [30, 31]]


@pytest.mark.parametrize("shape,n", [((2, 3, 4, 6), 2), ((1, 5, 8, 8), 2), ((3, 2, 6, 9), 3),
                                     ((2, 1, 5, 7), 1)])
def test_merge_is_exact_inverse_of_tile(shape, n):
    x = torch.randn(shape)
    tiles = tile(x, n)
    assert tiles.shape == (n * n * shape[0], shape[1], shape[2] // n, shape[3] // n)
    assert torch.equal(merge(tiles, n), x)
    t = torch.randn(n * n * 2, 3, 2, 3)
    assert torch.equal(tile(merge(t, n), n), t)


def test_odd_sizes_and_bad_batches_raise():
    with pytest.raises(ValueError, match="not divisible"):
        tile(torch.zeros(1, 3, 5, 4))
    with pytest.raises(ValueError, match="multiple of n"):
        merge(torch.zeros(6, 3, 2, 2))


def test_per_pixel_ops_commute_with_tile_merge_and_gap_is_tile_mean():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    conv = torch.nn.Conv2d(4, 3, 1, bias=False)
    with torch.no_grad():
        merged = merge(conv(tile(x)))
        torch.testing.assert_close(merged, conv(x))
        tile_logits = gap_logits(conv(tile(x))).view(4, 2, 3)
        torch.testing.assert_close(gap_logits(merged), tile_logits.mean(0))


def test_reconstruction_loss_reference_example():
    # Puzzle-CAM's re-loss: f = 0, f_re = 1 (1x2x2x2), y = [1, 0] -> 0.5 ("masking"), 1.0 ("selection").
    f, f_re, y = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2), torch.tensor([[1.0, 0.0]])
    assert reconstruction_loss(f, f_re, y).item() == pytest.approx(0.5)
    assert reconstruction_loss(f, f_re, y, normalization="labelled").item() == pytest.approx(1.0)


def _tiny_maps():
    """B=2, C=3, 4x4: merged differs from full by a constant d[b, c] of alternating sign."""
    cams = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    d = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    sign = torch.ones(4, 4)
    sign[::2, ::2] = -1
    merged = cams + d[:, :, None, None] * sign
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    return cams, merged, labels


def test_reconstruction_loss_hand_computed_on_tiny_batch():
    cams, merged, labels = _tiny_maps()
    # l1, mean over all 2*3*16 entries: labelled |d| are 1, 3 (image 0) and 5 (image 1), 16 pixels each.
    assert reconstruction_loss(cams, merged, labels).item() == pytest.approx((1 + 3 + 5) * 16 / 96, rel=1e-6)
    # l2: squared differences.
    assert reconstruction_loss(cams, merged, labels, distance="l2").item() == pytest.approx(
        (1 + 9 + 25) * 16 / 96, rel=1e-6)
    # per image over its labelled classes: (1+3)/2 = 2 and 5 -> mean 3.5.
    assert reconstruction_loss(cams, merged, labels, normalization="labelled").item() == pytest.approx(3.5)


def test_reconstruction_loss_uses_raw_maps_and_ignores_unlabelled_classes():
    cams, merged, labels = _tiny_maps()
    # Negative raw values count as they are (no ReLU): shifting both maps changes nothing,
    # while a change on an unlabelled class (image 0, class 1) changes nothing either.
    shifted = reconstruction_loss(cams - 10, merged - 10, labels)
    changed = merged.clone()
    changed[0, 1] += 100
    torch.testing.assert_close(shifted, reconstruction_loss(cams, merged, labels))
    torch.testing.assert_close(reconstruction_loss(cams, changed, labels),
                               reconstruction_loss(cams, merged, labels))


def test_reconstruction_loss_image_without_labels_contributes_zero():
    cams, merged = torch.zeros(2, 2, 2, 2), torch.ones(2, 2, 2, 2)
    labels = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    assert reconstruction_loss(cams, merged, labels, normalization="labelled").item() == pytest.approx(0.5)


def test_reconstruction_loss_shape_mismatch_raises():
    with pytest.raises(ValueError, match="multiple of n"):
        reconstruction_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 6, 6), torch.ones(1, 2))


def test_puzzle_classification_loss_hand_computed():
    merged = torch.zeros(2, 3, 4, 4)
    merged[0, 0] = 2.0
    merged[0, 1, :2] = -1.0  # half the pixels -> logit -0.5
    merged[1, 2, 0, 0] = 16.0  # one pixel -> logit 1.0
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    logits = [[2.0, -0.5, 0.0], [0.0, 0.0, 1.0]]
    for eps in (0.0, 0.1):
        got = puzzle_classification_loss(merged, labels, smoothing=eps).item()
        assert got == pytest.approx(mlsm_by_hand(logits, labels.tolist(), eps), rel=1e-6)


def test_puzzle_losses_bundle_and_gradients_reach_both_maps():
    cams, merged, labels = _tiny_maps()
    cams.requires_grad_(True)
    merged.requires_grad_(True)
    losses = puzzle_losses(cams, merged, labels, smoothing=0.1)
    torch.testing.assert_close(losses.classification, puzzle_classification_loss(merged, labels, 0.1))
    torch.testing.assert_close(losses.reconstruction, reconstruction_loss(cams, merged, labels))
    (losses.classification + losses.reconstruction).backward()
    assert cams.grad[0, 0].abs().sum() > 0 and cams.grad[0, 1].abs().sum() == 0
    assert merged.grad[0, 1].abs().sum() > 0  # through the classification term only
