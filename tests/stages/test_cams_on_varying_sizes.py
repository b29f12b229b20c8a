"""CAMs of a classifier trained on non-square images of varying size (tests/fixtures/voc_varying.py), whose
sides are rarely multiples of the stride: the stage's inference must score as well as a straightforward one
written here (each scale and its mirror through the network, the maps resized straight to the image).
The thesis code's placement (16*ceil(H/16) upsampling, mirror flipped back on the grid) scores 7 points lower
here (14 on a longer-trained classifier), which the synthetic set's 96 px squares cannot show."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.fixtures.voc_layout import VOC_TINY
from tests.fixtures.voc_varying import make_varying_voc_tree
from wsss.cams.evaluate import default_thresholds, threshold_predictions
from wsss.cams.inference import multiscale_cams, normalize_present
from wsss.metrics.segmentation import confusion_matrices, iou_per_class

SCALES = (1.0, 1.5)
MARGIN = 0.02
TRAIN = [*VOC_TINY, "tasks=[fit]", "dataset.crop_size=64", "dataset.min_size=60", "dataset.max_size=100",
         "stage.max_epochs=6", "stage.batch_size=8", "stage.lr=0.1", "stage.momentum=0.9",
         "stage.label_smoothing=0", "stage.augment.randaugment=false", "trainer.limit_val_batches=0",
         "dataset.scan=false", "seed=0"]


def straightforward_cams(cam_fn, image: torch.Tensor) -> torch.Tensor:
    """Per scale: bilinear resize, the image and its mirror through the network, ReLU, the mirror's maps
    flipped back, both resized straight to H x W and summed."""
    h, w = image.shape[-2:]
    total = 0
    for s in SCALES:
        size = (round(h * s), round(w * s))
        x = image if size == (h, w) else F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        maps = F.relu(cam_fn(torch.cat([x, x.flip(-1)])).float())
        maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)
        total = total + maps[:1] + maps[1:].flip(-1)
    return total


def cam_miou(split, mean, std, cams_of) -> float:
    ts = torch.tensor(default_thresholds())
    confusion = torch.zeros(len(ts), split.num_classes + 1, split.num_classes + 1, dtype=torch.long)
    for image_id in split.ids:
        pixels = split.load_image(image_id).astype(np.float32) / 255
        x = torch.from_numpy(((pixels - np.array(mean)) / np.array(std)).transpose(2, 0, 1)).float()[None]
        mask = torch.from_numpy(split.load_mask(image_id).astype(np.int64))
        maps, keys = normalize_present(cams_of(x)[0], torch.from_numpy(split.label(image_id)))
        confusion += confusion_matrices(threshold_predictions(maps, keys, ts, tuple(mask.shape)), mask,
                                        split.num_classes + 1)
    return float(iou_per_class(confusion).nanmean(-1).max())


@pytest.mark.slow
def test_stage_cams_score_as_a_straightforward_inference_on_varying_sizes(make_cfg, tmp_path):
    from wsss.tasks import Context

    root = make_varying_voc_tree(tmp_path / "VOC2012", train=40, sbd_extra=0, val=8, min_side=60,
                                 max_side=100)
    cfg = make_cfg(*TRAIN, f"dataset.args.root={root}", tiny=False)
    ctx = Context(cfg)
    ctx.trainer.fit(ctx.module, datamodule=ctx.dm)
    stage, split, dm = ctx.module.eval(), ctx.dm.split("train"), ctx.dm
    inf = cfg.stage.inference
    with torch.no_grad():
        reference = cam_miou(split, dm.mean, dm.std, lambda x: straightforward_cams(stage.raw_cams, x))
        ours = cam_miou(split, dm.mean, dm.std, lambda x: multiscale_cams(
            stage.raw_cams, x, SCALES, True, inf.image_resize, inf.upsample_stride, dm.mean, dm.std,
            flip_merge=inf.flip_merge))
    # an all-background prediction scores at most 1/11 (background IoU over the 11 classes of the set); the
    # trained classifier scores 0.35 with both inferences below, 0.27 with the thesis code's placement
    assert reference > 0.25, f"the classifier learned too little to judge its CAMs ({reference:.3f})"
    assert ours >= reference - MARGIN, f"stage inference {ours:.3f} vs straightforward {reference:.3f}"
