"""Thesis Table 7's per-epoch monitoring number: CAM mIoU of the current weights on a split with masks.

Single scale, no flip, the best background threshold of the sweep, as the thesis code's per-epoch
evaluation. It is a *logged number only*: no checkpoint callback, early stopping or schedule reads it
(the weakly supervised stages keep their last checkpoint), and it runs without touching anything that
training depends on: the networks' train/eval modes are restored, BatchNorm statistics are not updated
(eval mode, no_grad), and the random number generators are forked, so a run trains the same weights with
the switch on or off (tests/stages/test_train_cam_monitor.py).
"""
from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch

from wsss.cams.evaluate import default_thresholds, threshold_predictions
from wsss.cams.inference import multiscale_cams_and_seeds, normalize_present
from wsss.data import transforms as T
from wsss.data.datasets import TransformedSplit
from wsss.data.ground_truth import ground_truth_mask
from wsss.metrics.segmentation import confusion_matrices, iou_per_class

METRIC = "monitor/train_cam_miou"


@contextmanager
def untouched_training_state(module: torch.nn.Module):
    """Eval mode and no_grad inside; every submodule's mode and every RNG (python, numpy, torch) restored."""
    modes = {m: m.training for m in module.modules()}
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        module.eval()
        try:
            yield
        finally:
            for m, mode in modes.items():
                m.train(mode)
            random.setstate(py_state)
            np.random.set_state(np_state)


def single_scale_confusion(cam_fn, split, ids: list[str], thresholds: list[float], mean, std, device,
                           image_resize: str = "pil_bicubic", upsample_stride: int = 16) -> torch.Tensor:
    """(T, K+1, K+1) confusion matrices of the thresholded single-scale CAMs of `ids` against their masks."""
    ts = torch.tensor(thresholds, device=device)
    k = split.num_classes + 1
    confusion = torch.zeros(len(ts), k, k, dtype=torch.long, device=device)
    items = TransformedSplit(split, T.eval_transform(mean, std), ids)
    for i in range(len(items)):
        item = items[i]
        mask = torch.from_numpy(ground_truth_mask(split, item["id"]).astype(np.int64)).to(device)
        images = item["image"][None].to(device)
        cams, _ = multiscale_cams_and_seeds(cam_fn, images, (1.0,), False, image_resize, upsample_stride,
                                            mean, std, seeds=False)
        maps, keys = normalize_present(cams[0], item["label"].to(device))
        preds = threshold_predictions(maps, keys, ts, tuple(mask.shape))
        confusion += confusion_matrices(preds, mask, k)
    return confusion


def train_cam_miou(stage) -> float:
    """The monitored mIoU of a CAM stage (`stage.evaluation.monitor_split`, default `train`), this rank's
    shard summed over ranks."""
    ev = stage.scfg.get("evaluation") or {}
    inf = stage.scfg.get("inference") or {}
    dm = stage.trainer.datamodule
    split = dm.split(ev.get("monitor_split", "train"))
    if not split.has_masks:
        raise ValueError(f"stage.evaluation.monitor_train_cam_miou=true but split "
                         f"{ev.get('monitor_split', 'train')!r} of data set {stage.cfg['dataset']['name']!r} has "
                         f"no ground-truth masks; set stage.evaluation.monitor_split to a split with masks or turn "
                         f"the switch off")
    rank, world = stage.trainer.global_rank, stage.trainer.world_size
    thresholds = list(ev.get("thresholds") or default_thresholds())
    with untouched_training_state(stage):
        confusion = single_scale_confusion(stage.raw_cams, split, split.ids[rank::world], thresholds, dm.mean, dm.std,
                                           stage.device, inf.get("image_resize", "pil_bicubic"),
                                           int(inf.get("upsample_stride", 16)))
    if world > 1:
        confusion = stage.trainer.strategy.reduce(confusion, reduce_op="sum")
    return float(iou_per_class(confusion).nanmean(-1).max())
