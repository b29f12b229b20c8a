import pytest
import torch

from wsss.losses.occse import NO_CLASS
from wsss.losses.pnoc import generator_loss, hard_erase, hard_mask, noc_loss

from .by_hand import mlsm_by_hand


def _cams():
    """B=2, C=3, 4x4. Erased classes 1 (image 0, max 10) and 2 (image 1, max 2); others are huge."""
    cams = torch.full((2, 3, 4, 4), 50.0)
    cams[0, 1] = torch.tensor([[10.0, 3.0, 2.0, 1.0],
                               [-5.0, 2.5, 0.0, 0.0],
                               [0.0, 0.0, 1.9, 0.0],
                               [0.0, 0.0, 0.0, 7.0]])
    cams[1, 2] = torch.tensor([[2.0, 0.5, 0.3, 0.0],
                               [0.0, 0.41, 0.39, 0.0],
                               [-1.0, 0.0, 0.0, 0.0],
                               [0.0, 0.0, 0.0, 1.0]])
    return cams, torch.tensor([1, 2])


def test_hard_mask_thresholds_per_image_normalised_map():
    cams, r = _cams()
    mask = hard_mask(cams, r, (4, 4), threshold=0.2)
    # image 0: psi = cam / 10 > 0.2 <=> cam > 2 (2.0 -> 0.199998 is kept, eps in the denominator);
    # image 1: cam / 2 > 0.2 <=> cam > 0.4.
    expected0 = torch.tensor([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)
    expected1 = torch.tensor([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)
    assert mask.dtype == torch.bool and mask.shape == (2, 1, 4, 4)
    assert torch.equal(mask[0, 0], expected0)
    assert torch.equal(mask[1, 0], expected1)


def test_hard_mask_applies_relu_before_resize():
    # 1x2 map [-2, 2] -> width 4: relu first gives psi = [0, 0.25, 0.75, 1] (resize first would give
    # [0, 0, 0.5, 1]), so with delta 0.2 the second pixel is erased too.
    cams = torch.tensor([[-2.0, 2.0]]).view(1, 1, 1, 2)
    assert hard_mask(cams, torch.tensor([0]), (1, 4)).flatten().tolist() == [False, True, True, True]


def test_hard_erase_zeroes_masked_pixels_and_keeps_the_rest():
    cams, r = _cams()
    images = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = hard_erase(images, cams, r)
    mask = hard_mask(cams, r, (4, 4)).expand_as(images)
    assert torch.all(out[mask] == 0)
    assert torch.equal(out[~mask], images[~mask])
    none = hard_erase(images, cams, torch.tensor([NO_CLASS, 2]))
    assert torch.equal(none[0], images[0])


def test_no_gradient_through_hard_mask_but_through_soft_one():
    from wsss.losses.occse import soft_erase_classes

    cams, r = _cams()
    cams.requires_grad_(True)
    images = torch.randn(2, 3, 8, 8, requires_grad=True)
    hard = hard_erase(images, cams, r)
    hard.sum().backward()
    assert cams.grad is None
    assert images.grad is not None
    soft_erase_classes(images, cams, r).sum().backward()
    assert cams.grad is not None and cams.grad.abs().sum() > 0


def test_noc_loss_uses_full_labels_and_weight():
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    labels = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    for eps in (0.0, 0.1):
        expected = 0.7 * mlsm_by_hand(logits.tolist(), labels.tolist(), eps)
        assert noc_loss(logits, labels, weight=0.7, smoothing=eps).item() == pytest.approx(expected, rel=1e-6)
    assert noc_loss(logits, labels, weight=0.0).item() == 0.0


def test_generator_loss_combinations():
    c, p, re, cse = (torch.tensor(v) for v in (1.0, 2.0, 3.0, 5.0))
    # P-OC / P-NOC (Eq. 26-27): c + p + lambda_re * re + lambda_cse * cse.
    full = generator_loss(c, puzzle_classification=p, reconstruction=re, reconstruction_weight=2.0,
                          cse=cse, cse_weight=0.5)
    assert full.item() == pytest.approx(1 + 2 + 6 + 2.5)
    # Puzzle-CAM (Eq. 5) and OC-CSE (Eq. 6).
    puzzle = generator_loss(c, puzzle_classification=p, reconstruction=re, reconstruction_weight=4.0)
    assert puzzle.item() == 15.0
    assert generator_loss(c, cse=cse, cse_weight=0.3).item() == pytest.approx(2.5)
    with pytest.raises(ValueError, match="cse term given without its weight"):
        generator_loss(c, cse=cse)


def test_generator_loss_gradients_follow_weights():
    c, p, re, cse = (torch.tensor(1.0, requires_grad=True) for _ in range(4))
    generator_loss(c, puzzle_classification=p, reconstruction=re, reconstruction_weight=4.0,
                   cse=cse, cse_weight=0.3).backward()
    assert [t.grad.item() for t in (c, p, re, cse)] == pytest.approx([1.0, 1.0, 4.0, 0.3])
