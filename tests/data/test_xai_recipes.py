"""The classifier recipes of the XAI benchmark (thesis A.1.2) compose with the values the thesis states, train
on a tiny tree of their data set (its bias included), and the xai stage explains one of them."""
from pathlib import Path

import pytest

from wsss.thesis import value

RECIPES = {  # experiment: (dataset, backbone, input size)
    "xai_voc07_vgg16": ("voc07", "vgg16", 224),
    "xai_voc07_resnet101": ("voc07", "resnet101", 512),
    "xai_voc07_efficientnet_b6": ("voc07", "efficientnet_b6", 528),
    "xai_voc12_resnet101": ("voc12", "resnet101", 512),
    "xai_coco17_resnet101": ("coco17", "resnet101", 512),
    "xai_planet_resnet101": ("planet", "resnet101", 256),
    "xai_hpa_resnet101": ("hpa", "resnet101", 512),
}


@pytest.mark.parametrize("experiment", sorted(RECIPES))
def test_recipe_composes_with_the_thesis_values(make_cfg, experiment):
    dataset, backbone, size = RECIPES[experiment]
    cfg = make_cfg(f"experiment={experiment}", tiny=False)
    assert (cfg.dataset.name, cfg.backbone.name, cfg.stage.name) == (dataset, backbone, "classifier")
    assert cfg.dataset.crop_size == cfg.dataset.min_size == cfg.dataset.max_size == size
    s = cfg.stage
    assert s.lr == 0.01 and s.lr * s.lr_alpha_new == pytest.approx(0.1)  # backbone 0.01, head 0.1
    assert s.momentum == 0.9 and s.nesterov and s.max_epochs == 80 and s.label_smoothing == 0.0
    assert not (s.augment.randaugment or s.augment.color_jitter or s.augment.hflip)
    assert list(s.tasks) == ["fit"] and cfg.backbone.pretrained
    assert s.head.bias  # the sigmoid dense layer σ(GAP·W + b)
    assert cfg.dataset.get("in_chans", 3) == (4 if dataset == "hpa" else 3)


# -- each recipe trained for two batches on a tiny tree of its data set (weights from scratch) ----------------
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def write_voc07(root, size: int = 32):
    """A VOC2007 classification tree: JPEGs, XML annotations, ImageSets/Main/{train,val,trainval,test}.txt."""
    import numpy as np
    from PIL import Image

    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = [f"{i:06d}" for i in range(1, 9)]
    for k, image_id in enumerate(ids):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg")
        names = (VOC_CLASSES[k % 20], VOC_CLASSES[(3 * k + 7) % 20])
        xml = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
                      f"<xmax>{size - 2}</xmax><ymax>{size - 2}</ymax></bndbox></object>" for n in names)
        (root / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{xml}</annotation>")
    for split, part in (("train", ids[:4]), ("val", ids[4:6]), ("trainval", ids[:6]), ("test", ids[6:])):
        (root / "ImageSets/Main" / f"{split}.txt").write_text("\n".join(part) + "\n")
    return root


def write_tree(dataset: str, tmp_path, size: int):
    """The root of a tiny tree of `dataset` in its released layout (the data tests' writers)."""
    if dataset == "voc07":
        return write_voc07(tmp_path / "VOC2007", size)
    if dataset == "voc12":
        from tests.fixtures.voc_layout import make_voc_tree

        return make_voc_tree(tmp_path / "VOC2012", train=4, sbd_extra=2, val=2)
    if dataset == "coco17":
        from tests.data.test_coco import ANNOTATIONS, full_categories, write_coco

        labelled = {i: objs for i, objs in ANNOTATIONS.items() if objs}  # training needs a label per image
        for split in ("train2017", "val2017"):
            write_coco(tmp_path / "coco17", split, "{id}.jpg", full_categories(), labelled, size=(size, size))
        return tmp_path / "coco17"
    if dataset == "planet":
        from tests.data.test_planet import write_planet

        return write_planet(tmp_path / "planet", size=size)
    from tests.data.test_hpa import write_hpa

    return write_hpa(tmp_path / "hpa", size=size)


def fit_recipe(make_cfg, tmp_path, experiment: str, size: int, *overrides: str):
    """Train `experiment` for two batches on a tiny tree; returns (config, checkpoint path, metrics)."""
    from wsss.tasks import run

    dataset, _, _ = RECIPES[experiment]
    root = write_tree(dataset, tmp_path, size)
    cfg = make_cfg(f"experiment={experiment}", f"dataset.args.root={root}", "backbone.pretrained=false",
                   f"dataset.crop_size={size}", f"dataset.min_size={size}", f"dataset.max_size={size}",
                   "stage.max_epochs=1", "stage.batch_size=2", "trainer.limit_train_batches=2",
                   "trainer.limit_val_batches=1", "num_workers=0", "logger=csv", "trainer.accelerator=cpu",
                   "trainer.enable_progress_bar=false", *overrides, tiny=False)
    metrics = run(cfg)
    return cfg, Path(cfg.paths.run_dir) / "checkpoints" / "last.ckpt", metrics


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(RECIPES))
def test_recipe_trains_the_biased_dense_head(make_cfg, tmp_path, experiment):
    """Every recipe runs on its data set's layout and trains the sigmoid dense layer's bias b (eq. 25, A.1.2); the
    run's metrics hold no thesis value (the thesis report puts Table 5 beside them)."""
    import torch

    # 2×2 maps at stride 32 for the deep nets (EfficientNet-B6's BatchNorm gives NaN on 1×1 maps of 2 images)
    size = 64 if experiment.endswith(("vgg16", "efficientnet_b6")) else 32
    cfg, ckpt, metrics = fit_recipe(make_cfg, tmp_path, experiment, size)
    assert cfg.stage.head.bias
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    bias = state["net.head.bias"]
    assert bias.shape == (cfg.dataset.num_classes,) and bias.abs().sum() > 0  # initialised at 0, then trained
    assert not any("thesis" in k for k in metrics)  # Table 5 is the thesis report's (tests/thesis/test_report.py)


@pytest.mark.slow
def test_xai_stage_explains_the_vgg16_recipe_with_its_bias(make_cfg, tmp_path):
    """The xai stage rebuilds VGG16-GAP (block5_pool) with the trained bias: its probabilities are σ(GAP·W + b)
    of the classifier, and its table is written."""
    import json

    import torch
    from omegaconf import OmegaConf

    from wsss.stages.xai import XAIStage
    from wsss.tasks import run

    _, ckpt, _ = fit_recipe(make_cfg, tmp_path, "xai_voc07_vgg16", 64)
    cfg = make_cfg("stage=xai", "dataset=voc07", "backbone=vgg16", "backbone.pretrained=false",
                   f"dataset.args.root={tmp_path / 'VOC2007'}", f"stage.checkpoint={ckpt}", "stage.image_size=64",
                   "stage.max_images=2", "stage.methods=[cam,scorecam]", "stage.label_source=labels",
                   "stage.method_options.scorecam.max_channels=4", "stage.figure.num_images=1", "num_workers=0",
                   "logger=csv", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", run="xai", tiny=False)
    module = XAIStage(OmegaConf.to_container(cfg, resolve=True))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(module.net.head.bias, state["net.head.bias"]) and module.net.backbone.stride == 32
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = module.net.features(x)
        expected = features.mean(dim=(2, 3)) @ module.net.head.weight.t() + state["net.head.bias"]
        torch.testing.assert_close(module.split_model()(x), expected, atol=1e-5, rtol=1e-5)
    metrics = run(cfg)
    results = json.loads((Path(cfg.paths.run_dir) / "xai" / "results.json").read_text())
    assert sum(results["methods"]["cam"]["pairs"].values()) == 4  # 2 images × 2 ground-truth labels
    assert 0 <= metrics["xai/cam/ad"] <= 100
    assert not any("thesis" in k for k in metrics)  # the thesis is the thesis report's, not the stage's

    # the split Table 3 explains (VOC07 val, unseen by the recipe's classifier), detected labels: the thesis
    # report puts Table 3's VGG16 row beside it (at the classifier's training size, 64 here)
    thesis = make_cfg("stage=xai", "dataset=voc07", "backbone=vgg16", "backbone.pretrained=false",
                      f"dataset.args.root={tmp_path / 'VOC2007'}", f"stage.checkpoint={ckpt}",
                      "stage.split=val", "stage.methods=[cam,gradcam]", "stage.figure.num_images=0",
                      "num_workers=0", "logger=csv", "trainer.accelerator=cpu",
                      "trainer.enable_progress_bar=false", run="xai_val", tiny=False)
    assert XAIStage(OmegaConf.to_container(thesis, resolve=True)).image_size == 64
    metrics = run(thesis)
    assert not any("thesis" in k for k in metrics)
    from wsss.thesis.__main__ import main

    recorded = ckpt.parents[1] / "run.json"   # the command line `python run.py experiment=...` records
    info = json.loads(recorded.read_text())
    recorded.write_text(json.dumps({**info, "overrides": ["stage=classifier", "experiment=xai_voc07_vgg16"]}))
    assert main([str(tmp_path)]) == 0
    report = json.loads((tmp_path / "thesis.json").read_text())
    [xai] = [r for r in report["runs"] if Path(r["run_dir"]) == Path(thesis.paths.run_dir)]
    cells = {(v["row"], v["column"]): (v["thesis"], v["ours"]) for v in xai["values"]}
    assert cells[("%IC VGG16", "CAM")][0] == 5.65 and cells[("F1+ VGG16", "CAM")][0] == 31.7   # Table 3
    assert cells[("%IC VGG16", "CAM")][1] == pytest.approx(metrics["xai/cam/ic"], nan_ok=True)  # percent
    assert {column for _, column in cells} == {"CAM"}   # the thesis reports Grad-CAM++, not Grad-CAM
    assert xai["recipe_command"] == ["stage=xai", "dataset=voc07", "backbone=vgg16", "stage.split=val"]
    departed = xai["departures"]
    assert "backbone.pretrained: True → False" in departed and "stage.max_epochs: 80 → 1" not in departed
    assert "classifier (experiment=xai_voc07_vgg16): stage.max_epochs: 80 → 1" in departed, departed
    assert any(d.startswith("stage.methods:") for d in departed) and "stage.split: val → val" not in departed
    assert "Table 3" in (tmp_path / "thesis.md").read_text()
