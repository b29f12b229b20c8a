"""The benchmarks' "outputs checked equal": the check refuses different outputs, and each ceiling computes
what ours computes (so a ratio compares like with like). No timing is asserted."""

import sys

import pytest
import torch

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from common import check_equal, max_difference  # noqa: E402


def test_check_equal_refuses_a_difference_a_missing_key_and_a_shape():
    a = {"w": torch.zeros(3), "b": torch.ones(2)}
    assert check_equal("same", a, {k: v.clone() for k, v in a.items()}, atol=0.0) == 0.0
    assert max_difference(a, {"w": torch.tensor([0.0, 0.5, 0.0]), "b": torch.ones(2)}) == 0.5
    with pytest.raises(AssertionError, match="differ by 0.5"):
        check_equal("moved", a, {"w": torch.tensor([0.0, 0.5, 0.0]), "b": torch.ones(2)}, atol=1e-3)
    with pytest.raises(ValueError, match="different keys"):
        check_equal("keys", a, {"w": torch.zeros(3)}, atol=1.0)
    with pytest.raises(ValueError, match="shapes"):
        check_equal("shape", a, {"w": torch.zeros(4), "b": torch.ones(2)}, atol=1.0)


def test_predict_ceiling_merges_its_forwards_as_ours_does():
    """bench_predict's independent merge of the bare forwards equals our multi-scale + flip CAMs."""
    import bench_predict
    from wsss.cams.inference import multiscale_cams_and_seeds, normalize_present

    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 5, 3, stride=4, padding=1)
    image, label = torch.randn(1, 3, 24, 40), torch.tensor([[0.0, 1, 0, 1, 0]])
    scales = (0.5, 1.0, 1.5)
    torch.set_grad_enabled(False)
    cams, _ = multiscale_cams_and_seeds(
        net, image, scales, True, "bilinear", 4, seeds=False, flip_merge="image"
    )
    want = normalize_present(cams[0], label[0])[0]
    outs = []
    for s in scales:
        v = (
            torch.nn.functional.interpolate(image, size=(round(24 * s), round(40 * s)), mode="bilinear")
            if s != 1.0
            else image
        )
        outs.append(net(torch.cat([v, v.flip(-1)])))
    got = bench_predict.merged(outs, label, (24, 40), 4)
    torch.set_grad_enabled(True)
    assert max_difference({"cams": want.detach()}, {"cams": torch.from_numpy(got)}) < 1e-5


def test_train_step_ceiling_reaches_the_weights_of_our_trainer(tmp_path):
    """The bare loop of bench_train_step (the stage's training_step, its optimiser and scheduler, no Trainer)
    and our Trainer end two classifier steps with the same weights; a ceiling that skipped the scheduler
    would not."""
    import bench_train_step as b

    b.write_oc(tmp_path, 32, 2)
    cfg = b.stage_config("classifier", 32, 2, tmp_path)
    from wsss.stages.classifier import ClassifierStage

    assert b.parity(cfg, ClassifierStage, b.make_batches(cfg, 2)) <= 1e-6


@pytest.mark.parametrize(
    "stage, size, accumulate",
    [("saliency", 32, 2), ("affinity", 64, 1), ("deeplab", 32, 1)],
)
def test_train_step_ceiling_of_the_dense_stages(tmp_path, stage, size, accumulate):
    """The same for the saliency network (gradients accumulated over 2 batches, its backbone BatchNorm
    frozen), AffinityNet and DeepLab: three batches, the same weights and BatchNorm statistics on both
    sides."""
    import bench_train_step as b
    from hydra.utils import get_class

    cfg = b.stage_config(stage, size, 2, tmp_path, accumulate)
    assert b.accumulation(cfg) == accumulate
    stage_cls = get_class(cfg["stage"]["_target_"])
    assert b.parity(cfg, stage_cls, b.make_batches(cfg, 3)) <= 1e-5


def test_sweep_reading_stored_types_counts_what_float32_and_int64_count(tmp_path):
    """The threshold sweep hands the float16 CAMs and uint8 masks to the counting as stored (no numpy
    conversion): its mIoU curve equals the per-map counting of float32 CAMs and int64 masks, void included."""
    import numpy as np
    from PIL import Image

    import bench_evaluate
    from bench_data import write_voc
    from wsss.cams.evaluate import default_thresholds, sweep, threshold_predictions
    from wsss.data.voc import VOCDataset
    from wsss.metrics.segmentation import confusion_matrices, iou_per_class

    root = write_voc(tmp_path / "VOC2012", 3)
    first = root / "SegmentationClassAug" / "2007_000000.png"
    mask = np.array(Image.open(first))
    mask[:20] = 255
    Image.fromarray(mask, mode="L").save(first)
    split = VOCDataset(root, "train_aug")
    bench_evaluate.write_cams(split, tmp_path / "cams")
    got = sweep(split, tmp_path / "cams").miou
    ts, confusion = torch.tensor(default_thresholds()), 0
    for image_id in split.ids:
        z = np.load(tmp_path / "cams" / f"{image_id}.npz")
        target = torch.from_numpy(np.array(Image.open(root / "SegmentationClassAug" / f"{image_id}.png")))
        cams = torch.from_numpy(z["cams"].astype(np.float32))
        preds = threshold_predictions(cams, torch.from_numpy(z["keys"]), ts, tuple(target.shape))
        confusion = confusion + confusion_matrices(preds, target.long(), split.num_classes + 1)
    assert got == [float(v) for v in iou_per_class(confusion).nanmean(-1)]


def test_saliency_predict_ceiling_merges_its_forwards_as_ours_does():
    """bench_predict_saliency's independent merge of the bare forwards equals our multi-scale + flip
    saliency (sigmoid, mean over the views) to the grey level."""
    import bench_predict_saliency as b
    from wsss.saliency.inference import multiscale_saliency, to_uint8

    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 1, 3, stride=2, padding=1)
    image = torch.randn(1, 3, 24, 40)
    with torch.no_grad():
        want = to_uint8(multiscale_saliency(net, image, b.SCALES, True, "sigmoid")[0])
        _, outs = b.forwards(net, b.views_of([{"image": image}]))
    got = b.merged(outs[0], (24, 40))
    assert max_difference({"s": torch.from_numpy(want).double()}, {"s": torch.from_numpy(got)}) <= 1.0
    assert got.std() > 0  # not a constant map that any merge would reproduce


def test_deeplab_predict_ceiling_merges_its_forwards_as_ours_does():
    """bench_predict_deeplab's independent merge of the bare forwards gives our multi-scale + flip label
    map (mean of the views' softmax) at every pixel, on a map of several classes."""
    import bench_predict_deeplab as b
    from bench_predict_saliency import forwards, views_of
    from wsss.segmentation.inference import multiscale_probabilities

    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    image = torch.randn(1, 3, 24, 40)
    with torch.no_grad():
        want = multiscale_probabilities(net, image, b.SCALES, True, "softmax")[0].argmax(0)
        _, outs = forwards(net, views_of([{"image": image}], b.SCALES))
    got = torch.from_numpy(b.merged(outs[0], (24, 40)))
    assert torch.equal(got, want) and len(got.unique()) > 2
