"""Stage `deeplab`: loss, training, the masks it reads (no peeking) and fit/predict/evaluate/export runs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from wsss.artifacts import ArtifactDir
from wsss.segmentation.evaluate import load_scores, scores_path
from wsss.segmentation.export import archive_members
from wsss.stages.deeplab import DeepLabStage, segmentation_loss

SMALL = ["stage=deeplab", "stage.model.decoder_channels=32", "stage.lr=0.01", "stage.label_smoothing=0.1"]


def test_ignore_index_really_ignores():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 7)
    target = torch.randint(0, 4, (2, 6, 7))
    target[:, :2] = 255
    for smoothing in (0.0, 0.1):
        loss = segmentation_loss(logits, target, smoothing)
        changed = logits.clone()
        changed[:, :, :2] = 50 * torch.randn(2, 4, 2, 7)  # only pixels labelled 255
        assert torch.equal(segmentation_loss(changed, target, smoothing), loss)
        touched = logits.clone()
        touched[0, :, 3, 3] += torch.tensor([5.0, -5.0, 0.0, 1.0])  # a labelled pixel
        assert not torch.isclose(segmentation_loss(touched, target, smoothing), loss)
    # plain CE = mean over labelled pixels of −log softmax of the target class
    valid = target != 255
    nll = -logits.log_softmax(1).gather(1, target.clamp(max=3)[:, None])[:, 0]
    torch.testing.assert_close(segmentation_loss(logits, target), nll[valid].mean())


def test_training_on_the_synthetic_set_lowers_the_loss(make_cfg):
    cfg = OmegaConf.to_container(make_cfg(*SMALL, "stage.masks=gt"), resolve=True)
    stage = DeepLabStage(cfg)
    batch = next(iter(stage.datamodule().train_dataloader()))
    net = stage.net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def loss_on_batch():
        torch.manual_seed(0)  # the same dropout masks every time
        return segmentation_loss(net(batch["image"]), batch["mask"])

    first = loss_on_batch().item()
    for _ in range(8):
        opt.zero_grad()
        loss = loss_on_batch()
        loss.backward()
        opt.step()
    last = loss_on_batch().item()
    assert last < 0.8 * first, (first, last)


def test_output_stride_8_doubles_the_aspp_rates(make_cfg):
    cfg = OmegaConf.to_container(make_cfg(*SMALL, "stage.masks=gt", "backbone.output_stride=8"), resolve=True)
    stage = DeepLabStage(cfg)
    assert stage.net.output_stride == 8 and stage.net.aspp_rates == (12, 24, 36)
    assert stage.net(torch.randn(1, 3, 64, 64)).shape == (1, 6, 64, 64)  # 5 classes + background


def noisy_pseudo_masks(dm, root, splits, dataset="synthetic", seed=0, all_background=()):
    """Pseudo masks = GT with 20% of pixels relabelled at random (or all background), + manifest."""
    rng = np.random.default_rng(seed)
    for split in splits:
        ds = dm.split(split)
        out = ArtifactDir(root / split, ".png")
        for image_id in ds.ids:
            gt = ds.load_mask(image_id)
            noise = rng.integers(0, ds.num_classes + 1, gt.shape)
            mask = np.zeros_like(gt) if split in all_background else np.where(rng.random(gt.shape) < 0.2, noise, gt)
            out.write_png(image_id, mask.astype(np.uint8), palette=True)
        out.write_manifest(stage="test", kind="pseudo_masks", dataset=dataset, split=split)
    return root


def test_masks_come_from_the_pseudo_folder_and_validation_never_sees_gt(make_cfg, tmp_path):
    cfg = OmegaConf.to_container(make_cfg(*SMALL, "stage.masks=gt"), resolve=True)
    gt_dm = DeepLabStage(cfg).datamodule()
    folder = noisy_pseudo_masks(gt_dm, tmp_path / "pseudo", ["train", "val"], all_background=("val",))
    cfg["stage"]["masks"] = str(folder)
    dm = DeepLabStage(cfg).datamodule()
    val_masks = torch.cat([b["mask"] for b in dm.val_dataloader()])
    assert set(val_masks.unique().tolist()) <= {0, 255}  # the (all-background) pseudo masks of val ...
    gt_val = torch.cat([b["mask"] for b in gt_dm.val_dataloader()])
    assert (gt_val.unique() > 0).sum() > 1  # ... not its GT, which has objects
    train = dm.masked_split("train")
    image_id = train.ids[0]
    np.testing.assert_array_equal(train.load_mask(image_id), ArtifactDir(folder / "train", ".png").read_png(image_id))
    assert not np.array_equal(train.load_mask(image_id), gt_dm.split("train").load_mask(image_id))
    # no val/ subfolder: no validation at all
    cfg["stage"]["val_split"] = "test"
    assert not DeepLabStage(cfg).datamodule().has_validation()


def test_foreign_or_missing_pseudo_masks_fail_clearly(make_cfg, tmp_path):
    cfg = OmegaConf.to_container(make_cfg(*SMALL, "stage.masks=gt"), resolve=True)
    dm = DeepLabStage(cfg).datamodule()
    noisy_pseudo_masks(dm, tmp_path / "voc", ["train"], dataset="voc12")
    for masks, error, match in ((tmp_path / "voc", ValueError, "dataset='voc12'"),
                                (tmp_path / "none", FileNotFoundError, "no finished artifacts of split 'train'")):
        cfg["stage"]["masks"] = str(masks)
        with pytest.raises(error, match=match):
            DeepLabStage(cfg).datamodule().train_dataloader()
    bad = ArtifactDir(tmp_path / "bad" / "train", ".png")
    noisy_pseudo_masks(dm, tmp_path / "bad", ["train"])
    bad.write_png(dm.split("train").ids[0], np.full((64, 64), 9, np.uint8), palette=True)
    bad.write_manifest(stage="test", kind="pseudo_masks", dataset="synthetic", split="train")  # its new size
    cfg["stage"]["masks"] = str(tmp_path / "bad")
    with pytest.raises(ValueError, match="class index 9"):
        DeepLabStage(cfg).datamodule().masked_split("train").load_mask(dm.split("train").ids[0])


@pytest.mark.slow
def test_fit_predict_evaluate_export_on_ground_truth(run_stage):
    metrics, run_dir = run_stage(*SMALL, "stage.masks=gt", "stage.predict_splits=[val]", "stage.eval_splits=[val]",
                                 "stage.export.split=val", "stage.export.archive=zip",
                                 "tasks=[fit,predict,evaluate,export]")
    assert "val/miou" in metrics and "val/pseudo_miou" not in metrics  # GT run: GT validation is legitimate
    # learning, not only a range: the same network untrained (measured: 16.2 % trained, 3.0 % untrained)
    untrained, _ = run_stage(*SMALL, "stage.masks=gt", "stage.predict_splits=[val]", "stage.eval_splits=[val]",
                             "tasks=[predict,evaluate]", run_name="untrained")
    assert metrics["predictions/val/miou"] >= untrained["predictions/val/miou"] + 0.05
    preds = ArtifactDir(run_dir / "predictions" / "val", ".png")
    manifest = preds.check({"dataset": "synthetic", "split": "val", "kind": "predictions"})
    assert manifest["count"] == 8 and manifest["suffix"] == ".png"
    scores = load_scores(scores_path(run_dir, "val"))
    assert metrics["predictions/val/miou"] == pytest.approx(scores.miou)
    assert np.asarray(scores.confusion).sum() > 0
    table = (run_dir / "evaluation" / "miou_table.md").read_text().splitlines()
    assert table[0] == "| method | background | disk | square | triangle | cross | ring | avg. |"
    members = archive_members(run_dir / "export" / "comp6_val_cls.zip")
    assert len(members) == 8 and all(m.startswith("results/VOC2012/Segmentation/comp6_val_cls/") for m in members)
    # resumable predict: nothing left to write, the files are kept
    before = {p.name: p.stat().st_mtime_ns for p in preds.root.glob("*.png")}
    run_stage(*SMALL, "stage.masks=gt", "stage.predict_splits=[val]", "tasks=[predict]")
    assert {p.name: p.stat().st_mtime_ns for p in preds.root.glob("*.png")} == before


@pytest.mark.slow
def test_cam_pseudo_masks_then_deeplab(run_stage):
    """classifier CAMs -> cam_masks (best threshold) -> deeplab on them, validated on pseudo masks only."""
    cls_metrics, cls_dir = run_stage("stage=classifier", "tasks=[predict,cam_masks]", run_name="cls")
    masks = cls_dir / "pseudo_masks"
    for split, n in (("train", 24), ("val", 8)):
        info = ArtifactDir(masks / split, ".png").check({"dataset": "synthetic", "split": split})
        assert info["count"] == n and info["threshold"] == cls_metrics["pseudo_masks/threshold"]
    metrics, run_dir = run_stage(*SMALL, f"stage.masks={masks}", "stage.eval_splits=[val]",
                                 "stage.predict_splits=[val]", "stage.inference.crf={iterations:2}",
                                 "stage.keep_best=true")
    assert "val/pseudo_miou" in metrics and "val/miou" not in metrics
    # stage.keep_best: the best pseudo-mask validation epoch is written and predicts
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    manifest = ArtifactDir(run_dir / "predictions" / "val", ".png").check({"split": "val"})
    assert manifest["checkpoint"].endswith("best.ckpt")
    assert 0.0 <= metrics["predictions/val/miou"] <= 1.0
    assert json.loads((run_dir / "run.json").read_text())["stage"] == "deeplab"


def test_max_steps_is_the_budget_only_without_max_epochs(make_cfg):
    from wsss.tasks import build_trainer

    for epochs, expected in (("null", (-1, 7)), ("1", (1, 7))):
        cfg = OmegaConf.to_container(make_cfg(*SMALL, "stage.masks=gt", f"stage.max_epochs={epochs}",
                                              "stage.max_steps=7", "logger=none"), resolve=True)
        trainer = build_trainer(cfg, DeepLabStage(cfg), Path(cfg["paths"]["run_dir"]))
        assert (trainer.max_epochs, trainer.max_steps) == expected
