"""Thesis Table 7's per-epoch train CAM mIoU (`stage.evaluation.monitor_train_cam_miou`): logged every epoch,
equal to an independent single-scale evaluation, and never able to change what is trained or kept."""
import csv
from pathlib import Path

import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from wsss.cams.monitor import METRIC

TWO_EPOCHS = ["tasks=[fit]", "stage.max_epochs=2", "trainer.limit_val_batches=0", "seed=3"]


def logged(run_dir: Path) -> list[dict]:
    with (run_dir / "logs" / "metrics.csv").open() as f:
        return [r for r in csv.DictReader(f) if r.get(METRIC)]


def test_monitor_is_logged_every_epoch_and_changes_no_weight(run_stage):
    _, off = run_stage(*TWO_EPOCHS, run_name="off")
    _, on = run_stage(*TWO_EPOCHS, "stage.evaluation.monitor_train_cam_miou=true", run_name="on")
    rows = logged(on)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(0.0 <= float(r[METRIC]) <= 1.0 for r in rows)
    assert not (off / "logs" / "metrics.csv").is_file() or not logged(off)
    a, b = (torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True) for d in (off, on))
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:  # weights, BN running statistics and counters: bit-identical
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


def test_no_callback_selects_on_the_monitor(make_cfg):
    from wsss.tasks import Context

    ctx = Context(make_cfg(*TWO_EPOCHS, "stage.evaluation.monitor_train_cam_miou=true"))
    for cb in ctx.trainer.callbacks:
        if isinstance(cb, (ModelCheckpoint, EarlyStopping)):
            assert cb.monitor is None or "monitor/" not in cb.monitor


def test_monitor_equals_an_independent_single_scale_evaluation(make_cfg):
    """Same number as writing single-scale, no-flip CAMs and sweeping them with wsss.cams.evaluate.sweep."""
    import numpy as np

    from wsss.artifacts import ArtifactDir
    from wsss.cams.evaluate import sweep
    from wsss.cams.monitor import train_cam_miou
    from wsss.tasks import Context

    cfg = make_cfg("tasks=[fit]", "trainer.limit_val_batches=0", "stage.inference.upsample_stride=1",
                   "stage.inference.image_resize=bilinear")
    ctx = Context(cfg)
    ctx.trainer.fit(ctx.module, datamodule=ctx.dm)
    stage, split = ctx.module, ctx.dm.split("train")
    ours = train_cam_miou(stage)
    out = ArtifactDir(Path(cfg.paths.run_dir) / "single", ".npz")
    stage.eval()
    with torch.no_grad():
        for image_id in split.ids:
            image = (split.load_image(image_id).astype(np.float32) / 255 - np.array(ctx.dm.mean)) / np.array(ctx.dm.std)
            x = torch.from_numpy(image.transpose(2, 0, 1)).float()[None]
            cams = torch.relu(stage.raw_cams(x).float())
            cams = torch.nn.functional.interpolate(cams, size=image.shape[:2], mode="bilinear", align_corners=False)[0]
            keys = torch.nonzero(torch.from_numpy(split.label(image_id)) > 0.5).flatten()
            maps = cams[keys] / (cams[keys].flatten(1).amax(1)[:, None, None] + 1e-5)
            out.write_npz(image_id, keys=keys.numpy(), cams=maps.numpy())
    assert abs(sweep(split, out.root).best_miou - ours) < 1e-6
