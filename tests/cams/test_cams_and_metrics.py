"""CAM test-time augmentation properties, the threshold sweep, and mIoU against torchmetrics."""
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from wsss.cams.evaluate import threshold_confusions, threshold_predictions
from wsss.cams.inference import multiscale_cams, normalize_present
from wsss.metrics.segmentation import ConfusionMatrixMetric, confusion_matrices, confusion_matrix, iou_per_class
from wsss.models.backbone import Backbone
from wsss.models.cam_head import CAMNet


def net():
    torch.manual_seed(0)
    return CAMNet(Backbone("resnet18", pretrained=False, output_stride=16), 4).eval()


@torch.no_grad()
def test_flipped_input_gives_flipped_cams():
    n = net()
    x = torch.randn(1, 3, 48, 64)
    cam_fn = lambda v: n(v)[1]  # noqa: E731
    a = multiscale_cams(cam_fn, x, scales=(0.5, 1.0, 1.5))
    b = multiscale_cams(cam_fn, x.flip(-1), scales=(0.5, 1.0, 1.5))
    assert a.shape == (1, 4, 48, 64)
    assert torch.allclose(a.flip(-1), b, atol=1e-4 * a.abs().max())


@torch.no_grad()
def test_present_classes_are_normalised_to_max_one():
    n = net()
    cams = multiscale_cams(lambda v: n(v)[1], torch.randn(1, 3, 32, 32))[0]
    maps, keys = normalize_present(cams, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert keys.tolist() == [1, 3]
    assert torch.allclose(maps.flatten(1).amax(1), torch.ones(2), atol=1e-3)
    assert maps.min() >= 0


@torch.no_grad()
def test_one_scale_without_flip_is_relu_of_the_cam():
    n = net()
    x = torch.randn(2, 3, 32, 32)
    raw = n(x)[1]
    up = torch.nn.functional.interpolate(raw.relu(), size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(multiscale_cams(lambda v: n(v)[1], x, scales=(1.0,), flip=False), up, atol=1e-5)


def test_threshold_predictions_background_wins_ties():
    cams = torch.tensor([[[0.2, 0.5]], [[0.6, 0.1]]])  # two classes, 1x2 image
    keys = torch.tensor([3, 7])
    preds = threshold_predictions(cams, keys, torch.tensor([0.1, 0.5, 0.7]), (1, 2))
    assert preds.tolist() == [[[8, 4]], [[8, 0]], [[0, 0]]]


def test_miou_matches_torchmetrics():
    g = torch.Generator().manual_seed(0)
    k = 6
    pred = torch.randint(0, k, (4, 30, 40), generator=g)
    target = torch.randint(0, k, (4, 30, 40), generator=g)
    target[:, :3] = 255
    ref = MulticlassJaccardIndex(k, average="none", ignore_index=255)(pred, target)
    ours = iou_per_class(confusion_matrix(pred, target, k))
    assert torch.allclose(ours.float(), ref, atol=1e-6)
    metric = ConfusionMatrixMetric(k)
    for p, t in zip(pred, target):
        metric.update(p, t)
    assert torch.isclose(metric.compute()["miou"].float(), ref.mean(), atol=1e-6)


def test_batched_confusions_equal_one_by_one():
    g = torch.Generator().manual_seed(1)
    preds = torch.randint(0, 4, (5, 10, 10), generator=g)
    target = torch.randint(0, 4, (10, 10), generator=g)
    target[0] = 255
    batched = confusion_matrices(preds, target, 4)
    for i in range(5):
        assert torch.equal(batched[i], confusion_matrix(preds[i], target, 4))
    assert batched.sum(dim=(1, 2)).tolist() == [90] * 5


def test_threshold_confusions_count_what_the_thresholded_maps_count():
    """The sweep's one-bincount count equals thresholding at each threshold and counting each map: unsorted
    and repeated thresholds, scores equal to a threshold (background wins), ignored pixels, no present
    class."""
    g = torch.Generator().manual_seed(2)
    thresholds = torch.tensor([0.3, 0.05, 0.25, 0.8, 0.5, 0.25])
    for present in (0, 1, 3):
        cams = torch.rand(present, 13, 17, generator=g)
        if present:
            cams[:, 0, :4] = 0.25
        keys = torch.randperm(20, generator=g)[:present]
        mask = torch.randint(0, 21, (13, 17), generator=g)
        mask[torch.rand(13, 17, generator=g) < 0.2] = 255
        want = confusion_matrices(threshold_predictions(cams, keys, thresholds, (13, 17)), mask, 21)
        assert torch.equal(threshold_confusions(cams, keys, thresholds, mask, 21), want)
