"""`run.py stage=classifier dataset=voc12 dataset.args.root=DIR` trains, predicts and evaluates on a VOC tree."""
import json
from pathlib import Path

from tests.data.test_synthetic_and_voc_layout import write_voc_tree


def test_classifier_on_a_real_voc_layout(tmp_path, make_cfg):
    from wsss.tasks import run

    root = tmp_path / "VOCdevkit" / "VOC2012"
    write_voc_tree(root)
    (root / "ImageSets/Segmentation/train.txt").write_text("2007_000001\n2007_000002\n2007_000003\n")
    cfg = make_cfg("stage=classifier", "dataset=voc12", f"dataset.args.root={root}", "dataset.train_split=train",
                   "dataset.val_split=val", "dataset.crop_size=32", "dataset.min_size=24", "dataset.max_size=40",
                   "backbone=resnet18", "backbone.pretrained=false", "stage.batch_size=2", "stage.max_epochs=1",
                   "stage.inference.scales=[1.0]", "num_workers=0", "trainer.accelerator=cpu",
                   "trainer.enable_progress_bar=false", run="voc", tiny=False)
    metrics = run(cfg)
    run_dir = Path(cfg.paths.run_dir)
    assert metrics["cams/val/count"] == 1 and metrics["cams/train/count"] == 3
    assert json.loads((run_dir / "cams" / "val" / "manifest.json").read_text())["dataset"] == "voc12"
    assert 0.0 <= metrics["cams/val/miou"] <= 1.0 and len(metrics["cams/val/iou"]) == 21
