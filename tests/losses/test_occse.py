import pytest
import torch

from wsss.losses.occse import (NO_CLASS, class_activation_mask, erased_one_hot, occse_loss, remaining_labels,
                               sample_erased_classes, soft_erase, soft_erase_classes)

from .by_hand import mlsm_by_hand


def test_draw_picks_only_positive_labels_uniformly():
    # OC-CSE's class draw (KAIST-vilab/OC-CSE@a833aea:models/model_cse.py): labels {3, 7, 12}, 10 000 draws ->
    # each 1/3 +- 0.02, never an absent class.
    labels = torch.zeros(10_000, 20)
    labels[:, [3, 7, 12]] = 1.0
    r = sample_erased_classes(labels, torch.Generator().manual_seed(0))
    counts = torch.bincount(r, minlength=20).float() / len(r)
    assert set(r.unique().tolist()) == {3, 7, 12}
    assert torch.all((counts[[3, 7, 12]] - 1 / 3).abs() < 0.02)


def test_draw_respects_each_images_labels_and_threshold():
    labels = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0], [0.4, 0.0, 0.9, 0.0]]).repeat(200, 1)
    r = sample_erased_classes(labels, torch.Generator().manual_seed(3))
    assert torch.all(labels[torch.arange(len(r)), r] > 0.5)


def test_draw_is_reproducible_with_a_seed():
    labels = (torch.rand(64, 20, generator=torch.Generator().manual_seed(1)) > 0.6).float()
    labels[:, 0] = 1.0
    a = sample_erased_classes(labels, torch.Generator().manual_seed(42))
    b = sample_erased_classes(labels, torch.Generator().manual_seed(42))
    c = sample_erased_classes(labels, torch.Generator().manual_seed(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_image_without_labels_gets_no_class_and_nothing_erased():
    labels = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    r = sample_erased_classes(labels, torch.Generator().manual_seed(0))
    assert r.tolist() == [NO_CLASS, 1]
    assert torch.equal(remaining_labels(labels, r), torch.zeros(2, 3))
    cams = torch.full((2, 3, 2, 2), 5.0)
    mask = class_activation_mask(cams, r, (2, 2))
    assert torch.all(mask[0] == 0) and torch.all(mask[1] > 0.99)


def test_remaining_plus_one_hot_is_labels():
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    r = torch.tensor([2, 1])
    assert remaining_labels(labels, r).tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    torch.testing.assert_close(remaining_labels(labels, r) + erased_one_hot(r, 3), labels)
    with pytest.raises(ValueError, match="erased classes"):
        erased_one_hot(torch.tensor([3, 0]), 3)


def _two_image_cams():
    """B=2, C=3, 2x2 maps; the erased classes (2 and 0) peak at 2 and 4; other classes are larger."""
    cams = torch.full((2, 3, 2, 2), 9.0)
    cams[0, 2] = torch.tensor([[2.0, 1.0], [-3.0, 0.0]])
    cams[1, 0] = torch.tensor([[0.0, 4.0], [1.0, -1.0]])
    return cams, torch.tensor([2, 0])


def test_mask_normalisation_batch_and_image():
    # OC-CSE's mask normalisation: maxima 2 and 4 -> batch-max: image 0 peaks at 2/4, image 1 at 4/(4+eps).
    cams, r = _two_image_cams()
    eps = 1e-5
    batch = class_activation_mask(cams, r, (2, 2), normalization="batch")
    torch.testing.assert_close(batch[0, 0], torch.tensor([[2.0, 1.0], [0.0, 0.0]]) / (4 + eps))
    torch.testing.assert_close(batch[1, 0], torch.tensor([[0.0, 4.0], [1.0, 0.0]]) / (4 + eps))
    image = class_activation_mask(cams, r, (2, 2), normalization="image")
    torch.testing.assert_close(image[0, 0], torch.tensor([[2.0, 1.0], [0.0, 0.0]]) / (2 + eps))
    torch.testing.assert_close(image[1, 0], batch[1, 0])


def test_mask_resize_and_relu_order():
    # 1x2 map [-2, 2] -> width 4 (bilinear, align_corners=False samples at -0.25, 0.25, 0.75, 1.25):
    # relu first: [0, 2] -> [0, 0.5, 1.5, 2]; resize first: [-2, -1, 1, 2] -> relu -> [0, 0, 1, 2].
    cams = torch.tensor([[-2.0, 2.0]]).view(1, 1, 1, 2)
    r = torch.tensor([0])
    relu_first = class_activation_mask(cams, r, (1, 4), eps=0.0)
    resize_first = class_activation_mask(cams, r, (1, 4), relu_before_resize=False, eps=0.0)
    torch.testing.assert_close(relu_first.flatten(), torch.tensor([0.0, 0.25, 0.75, 1.0]))
    torch.testing.assert_close(resize_first.flatten(), torch.tensor([0.0, 0.0, 0.5, 1.0]))
    # The thesis code's soft erase (lucasdavid/PNOC@f250e0d core/occse.py `_class_specific_mask`) applies
    # ReLU on the CAM grid, then resizes; the KAIST OC-CSE order (resize, then ReLU) is the switch.
    erased = soft_erase_classes(torch.ones(1, 1, 1, 4), cams, r, eps=0.0)
    torch.testing.assert_close(erased.flatten(), torch.tensor([1.0, 0.75, 0.25, 0.0]))
    kaist = soft_erase_classes(torch.ones(1, 1, 1, 4), cams, r, relu_before_resize=False, eps=0.0)
    torch.testing.assert_close(kaist.flatten(), torch.tensor([1.0, 1.0, 0.5, 0.0]))


def test_soft_erase_values_and_mean_colour():
    images = torch.full((2, 3, 2, 2), 3.0)
    cams, r = _two_image_cams()
    erased = soft_erase_classes(images, cams, r, eps=0.0)
    # image 1, pixel (0, 1) has mask 1 -> 0 (mean colour); image 0, pixel (0, 0) mask 0.5 -> 1.5.
    assert torch.all(erased[1, :, 0, 1] == 0)
    torch.testing.assert_close(erased[0, :, 0, 0], torch.full((3,), 1.5))
    torch.testing.assert_close(erased[0, :, 1, 0], torch.full((3,), 3.0))
    with pytest.raises(ValueError, match="does not match"):
        soft_erase(images, torch.zeros(2, 1, 3, 3))


def test_gradient_flows_through_soft_mask_into_the_erased_class_only():
    cams, r = _two_image_cams()
    cams.requires_grad_(True)
    images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    soft_erase_classes(images, cams, r).pow(2).sum().backward()
    assert cams.grad[0, 2].abs().sum() > 0 and cams.grad[1, 0].abs().sum() > 0
    assert cams.grad[0, :2].abs().sum() == 0 and cams.grad[1, 1:].abs().sum() == 0


def test_gradient_reaches_a_generator_head():
    # OC-CSE: the erased image's gradient reaches the generator's classifier weights.
    torch.manual_seed(0)
    head = torch.nn.Conv2d(4, 3, 1, bias=False)
    features = torch.randn(2, 4, 4, 4)
    images = torch.randn(2, 3, 16, 16)
    erased = soft_erase_classes(images, head(features), torch.tensor([1, 2]))
    erased.sum().backward()
    assert head.weight.grad[1:].abs().sum() > 0


def test_occse_loss_hand_computed():
    logits = torch.tensor([[1.5, -0.5, 2.0], [0.3, -1.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    r = torch.tensor([2, 1])
    targets = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    for eps in (0.0, 0.1):
        got = occse_loss(logits, labels, r, smoothing=eps).item()
        assert got == pytest.approx(mlsm_by_hand(logits.tolist(), targets, eps), rel=1e-6)
    assert occse_loss(logits, labels, r).item() == pytest.approx(
        torch.nn.functional.multilabel_soft_margin_loss(logits, torch.tensor(targets)).item(), rel=1e-6)
