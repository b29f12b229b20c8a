"""Stage `xai` end to end on a tiny KUR classifier: the Table-4 table, metrics.json, the figure, the label
sources, the network rebuilt as trained, and a brute-force recomputation of the CAM column."""
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from tests.helpers import TINY, compose_config

THRESHOLD = 0.35
METHODS = ["cam", "gradcam", "gradcampp", "scorecam", "ablationcam", "layercam", "minmax_cam", "d_minmax_cam"]
ROWS = ["%IC ↑", "%AD ↓", "%ADO ↑", "%AR ↑", "%ARO ↓", "F1− ↓", "F1+ ↑"]
KEYS = ["ic", "ad", "ado", "ar", "aro", "f1_neg", "f1_pos"]
# TINY without its classifier-stage keys (the xai stage has no inference/max_epochs settings)
XAI_TINY = [o for o in TINY if not o.startswith("stage.")]
FAST = ["stage=xai", "stage.batch_size=4", "stage.method_options.scorecam.max_channels=8",
        "stage.method_options.scorecam.batch_size=32"]


@pytest.fixture(scope="module")
def classifier_ckpt(module_tmp, data_dir) -> Path:
    """A one-epoch ResNet-18 classifier trained with KUR-α (α = C)."""
    from wsss.tasks import run

    cfg = compose_config(module_tmp("xai_cls") / "run", data_dir,
                         ["stage.kur.enabled=true", "stage.kur.alpha=num_classes", "stage.tasks=[fit]"])
    run(cfg)
    return Path(cfg.paths.run_dir) / "checkpoints" / "last.ckpt"


def xai_cfg(tmp_path: Path, data_dir: Path, ckpt: Path, *overrides: str):
    overrides = [*XAI_TINY, *FAST, f"stage.checkpoint={ckpt}", *overrides]
    return compose_config(tmp_path / "run", data_dir, overrides, tiny=False)


@pytest.fixture(scope="module")
def detected_run(module_tmp, data_dir, classifier_ckpt):
    from wsss.tasks import run

    # the one-epoch classifier's probabilities lie near 0.2–0.5: a lower threshold gives detections
    cfg = xai_cfg(module_tmp("xai_det"), data_dir, classifier_ckpt, "stage.figure.num_images=2",
                  f"stage.threshold={THRESHOLD}")
    return run(cfg), Path(cfg.paths.run_dir), cfg


@pytest.fixture(scope="module")
def labels_run(module_tmp, data_dir, classifier_ckpt):
    from wsss.tasks import run

    from wsss.logging_utils import finish_wandb

    cfg = xai_cfg(module_tmp("xai_gt"), data_dir, classifier_ckpt, "stage.label_source=labels",
                  "stage.methods=[cam,minmax_cam]", "stage.figure.num_images=1", "logger=wandb",
                  "logger.wandb.mode=offline")
    try:
        metrics = run(cfg)
    finally:
        finish_wandb(teardown=True)  # the offline run file is complete on disk after this
    return metrics, Path(cfg.paths.run_dir), cfg


def build_stage(cfg):
    from wsss.stages.xai import XAIStage

    module = XAIStage(OmegaConf.to_container(cfg, resolve=True))
    module.eval()
    return module


def explained_inputs(module):
    """(id, image (1, 3, H, W), label (C,)) of every explained image, through the stage's transform."""
    from wsss.data.datasets import TransformedSplit

    split = module.datamodule_split()
    return [(it["id"], it["image"][None], it["label"]) for it in TransformedSplit(split, module.transform())]


def brute_force_cam_metrics(module, use_labels: bool) -> tuple[dict, dict]:
    """Eq. 12–16 for CAM by explicit loops over images and labels: (macro %, pairs per class id)."""
    net, c = module.net, module.num_classes
    sums = {k: np.zeros(c) for k in ("ic", "ad", "ado", "ar", "aro")}
    count = np.zeros(c)
    with torch.no_grad():
        w = net.head.effective_weight()
        for _, x, label in explained_inputs(module):
            y = torch.sigmoid(net(x)[0])[0].double()
            chosen = [k for k in range(c) if (label[k] > 0 if use_labels else y[k] > 0.5)]
            a = net.features(x)[0]
            for k in chosen:
                m = torch.relu(torch.einsum("c,chw->hw", w[k], a))
                m = m - m.min()
                m = m / m.max() if m.max() > 0 else torch.zeros_like(m)
                m = F.interpolate(m[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
                o = torch.sigmoid(net(x * m)[0])[0].double()
                ob = torch.sigmoid(net(x * (1 - m))[0])[0].double()
                others = [n for n in chosen if n != k]
                drop = lambda before, after: max(0.0, float(before - after)) / float(before)  # noqa: E731
                sums["ic"][k] += float(y[k] < o[k])
                sums["ad"][k] += drop(y[k], o[k])
                sums["ar"][k] += drop(y[k], ob[k])
                sums["ado"][k] += sum(drop(y[n], o[n]) for n in others) / max(1, len(others))
                sums["aro"][k] += sum(drop(y[n], ob[n]) for n in others) / max(1, len(others))
                count[k] += 1
    seen = count > 0
    macro = {k: float(np.mean(100 * v[seen] / count[seen])) if seen.any() else math.nan
             for k, v in sums.items()}
    return macro, {k: int(n) for k, n in enumerate(count)}


def test_table_has_eight_methods_and_seven_metrics(detected_run):
    metrics, run_dir, _ = detected_run
    with open(run_dir / "xai" / "table.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["metric", "CAM", "Grad-CAM", "Grad-CAM++", "Score-CAM", "Ablation-CAM", "LayerCAM",
                       "MinMax-CAM", "D-MinMax-CAM"]
    assert [r[0] for r in rows[1:]] == ROWS
    values = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert np.isfinite(values).all()  # NaN only when no label is detected in the whole split
    assert ((values >= 0) & (values <= 100)).all()
    md = (run_dir / "xai" / "table.md").read_text()
    assert all(f"| {label} |" in md for label in ROWS) and "D-MinMax-CAM" in md
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    for m in METHODS:
        for k in KEYS:
            assert f"xai/{m}/{k}" in on_disk
            table_value = float(rows[1 + KEYS.index(k)][1 + METHODS.index(m)])
            assert table_value == pytest.approx(metrics[f"xai/{m}/{k}"], abs=0.006, nan_ok=True)
        assert set(on_disk[f"xai/{m}/per_class"]) == set(KEYS)
    assert on_disk["xai/images"] == 8 and on_disk["xai/label_source"] == "detected"


def test_figure_written(detected_run):
    from PIL import Image

    _, run_dir, _ = detected_run
    with Image.open(run_dir / "xai" / "figure.png") as im:
        width, height = im.size
    assert width > height > 0  # 2 rows × (image + 8 methods)


def test_detected_pairs_are_the_detections(detected_run):
    """label_source=detected evaluates exactly the labels with σ(s) > stage.threshold (counted here)."""
    _, run_dir, cfg = detected_run
    module = build_stage(cfg)
    expected = np.zeros(module.num_classes, dtype=int)
    with torch.no_grad():
        for _, x, _ in explained_inputs(module):
            expected += (torch.sigmoid(module.net(x)[0])[0] > THRESHOLD).numpy().astype(int)
    assert expected.sum() > 0
    results = json.loads((run_dir / "xai" / "results.json").read_text())
    classes = results["classes"]
    for m in METHODS:
        assert [results["methods"][m]["pairs"][c] for c in classes] == expected.tolist()


def test_labels_source_scores_ground_truth_labels_and_matches_brute_force(labels_run):
    metrics, run_dir, cfg = labels_run
    module = build_stage(cfg)
    results = json.loads((run_dir / "xai" / "results.json").read_text())
    classes = results["classes"]
    split = module.datamodule_split()
    gt = np.sum([split.label(i) for i in split.ids], axis=0).astype(int)
    assert [results["methods"]["cam"]["pairs"][c] for c in classes] == gt.tolist()
    assert gt.sum() > 0
    macro, pairs = brute_force_cam_metrics(module, use_labels=True)
    assert [pairs[k] for k in range(len(classes))] == gt.tolist()
    for k, v in macro.items():
        assert metrics[f"xai/cam/{k}"] == pytest.approx(v, abs=1e-3)
    rows = list(csv.reader(open(run_dir / "xai" / "table.csv", newline="")))
    assert rows[0] == ["metric", "CAM", "MinMax-CAM"]


def test_wandb_gets_scalars_table_and_figure(labels_run):
    from wsss.logging_utils import offline_history

    metrics, run_dir, _ = labels_run
    (folder,) = sorted((run_dir / "wandb").glob("offline-run-*"))
    logged = {k: v for row in offline_history(folder)["history"] for k, v in row.items()}
    assert logged["xai/cam/ad"] == pytest.approx(metrics["xai/cam/ad"])
    assert logged["xai/table/_type"] == "table-file" and int(logged["xai/table/nrows"]) == 7
    assert logged["xai/figure/_type"] == "images/separated" and int(logged["xai/figure/count"]) == 1
    assert (run_dir / "logs" / "metrics.csv").is_file()  # the CSV logger next to it keeps the scalars


def test_rebuilds_the_kur_classifier_as_trained(tmp_path, data_dir, classifier_ckpt):
    """KUR and α come from the checkpoint; the outputs equal the classifier stage's own network."""
    from wsss.stages.classifier import ClassifierStage

    module = build_stage(xai_cfg(tmp_path, data_dir, classifier_ckpt))
    assert module.net.head.kur and module.net.head.kur_alpha == 5.0
    cls_cfg = compose_config(tmp_path / "cls", data_dir,
                             ["stage.kur.enabled=true", "stage.kur.alpha=num_classes"])
    reference = ClassifierStage(OmegaConf.to_container(cls_cfg, resolve=True))
    reference.load_weights(classifier_ckpt)
    reference.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(module.net(x)[0], reference.net(x)[0], atol=1e-5)
        module.net.head.kur = False  # the weights really are KUR weights: without it the logits change
        assert not torch.allclose(module.net(x)[0], reference.net(x)[0], atol=1e-3)


def test_checkpoint_of_another_class_count_fails(tmp_path, data_dir, classifier_ckpt):
    with pytest.raises(ValueError, match=r"classifies 5 classes but dataset 'synthetic' has 4"):
        build_stage(xai_cfg(tmp_path, data_dir, classifier_ckpt, "dataset.args.num_classes=4"))


def test_missing_checkpoint_names_the_path(tmp_path, data_dir):
    missing = tmp_path / "nope" / "last.ckpt"
    with pytest.raises(FileNotFoundError, match="nope/last.ckpt"):
        build_stage(xai_cfg(tmp_path, data_dir, missing))


def test_bad_method_and_label_source_fail(tmp_path, data_dir, classifier_ckpt):
    with pytest.raises(ValueError, match="stage.methods"):
        build_stage(xai_cfg(tmp_path, data_dir, classifier_ckpt, "stage.methods=[cam,nocam]"))
    with pytest.raises(ValueError, match="stage.label_source='gt'"):
        build_stage(xai_cfg(tmp_path, data_dir, classifier_ckpt, "stage.label_source=gt"))


def test_checkpoint_of_another_backbone_fails(tmp_path, data_dir, classifier_ckpt):
    expected = "trained with backbone 'resnet18' but this run has backbone='resnet50'"
    with pytest.raises(ValueError, match=expected):
        build_stage(xai_cfg(tmp_path, data_dir, classifier_ckpt, "backbone=resnet50"))


def test_ranks_share_the_images_exactly_once(tmp_path, data_dir, classifier_ckpt):
    """Each DDP rank explains its own shard (no DistributedSampler padding that would count images twice)."""
    from types import SimpleNamespace

    module = build_stage(xai_cfg(tmp_path, data_dir, classifier_ckpt, "stage.max_images=7"))
    seen = []
    for rank in range(3):
        module._trainer = SimpleNamespace(global_rank=rank, world_size=3)
        seen += [i for batch in module.test_dataloader() for i in batch["id"]]
    module._trainer = None
    assert sorted(seen) == sorted(module.datamodule_split().ids[:7]) and len(seen) == 7


def test_explains_with_the_trained_batchnorm_statistics(tmp_path, data_dir, classifier_ckpt):
    """Lightning restores submodule flags to training after a test loop; the stage must still explain with
    (and never update) the running statistics: same probabilities as the network in eval mode."""
    module = build_stage(xai_cfg(tmp_path, data_dir, classifier_ckpt))
    _, x, y = explained_inputs(module)[0]
    with torch.no_grad():
        expected = torch.sigmoid(module.net(x)[0])
    stats = {k: v.clone() for k, v in module.net.state_dict().items() if "running" in k}
    for sub in module.modules():
        sub.training = True
    probs, _, _ = module.explain_batch(x, y[None])
    assert torch.allclose(probs, expected, atol=1e-6)
    assert all(torch.equal(v, module.net.state_dict()[k]) for k, v in stats.items())



def test_channels_last_gives_the_same_maps_from_one_body_pass(tmp_path, data_dir, classifier_ckpt):
    """Same maps; and the methods still share the stage's single body pass (no perturbation method listed)."""
    methods = "stage.methods=[cam,gradcam,gradcampp,layercam,minmax_cam,d_minmax_cam]"
    default = build_stage(xai_cfg(tmp_path / "a", data_dir, classifier_ckpt, methods))
    fast = build_stage(xai_cfg(tmp_path / "b", data_dir, classifier_ckpt, methods, "stage.channels_last=true"))
    conv = next(m for m in fast.net.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    _, x, y = explained_inputs(default)[0]
    probs, targets, maps = default.explain_batch(x, y[None])
    calls = []
    fast.net.backbone.register_forward_hook(lambda *_: calls.append(1))
    probs_cl, targets_cl, maps_cl = fast.explain_batch(x, y[None])
    assert len(calls) == 1
    assert torch.allclose(probs, probs_cl, atol=1e-5) and torch.equal(targets, targets_cl)
    for name in maps:
        assert torch.allclose(maps[name], maps_cl[name], atol=1e-4), name


def test_bf16_true_runs_every_method_close_to_float32(tmp_path, data_dir, classifier_ckpt, detected_run):
    """trainer.precision=bf16-true (the network and inputs in bf16, the metric sums in float64): the same
    table within a point, the figure included (it runs outside the test loop)."""
    from wsss.tasks import run

    _, _, cfg32 = detected_run
    cfg = xai_cfg(tmp_path, data_dir, classifier_ckpt, "stage.figure.num_images=1", f"stage.threshold={THRESHOLD}",
                  "trainer.precision=bf16-true")
    metrics = run(cfg)
    assert (Path(cfg.paths.run_dir) / "xai" / "figure.png").is_file()
    reference = json.loads((Path(cfg32.paths.run_dir) / "metrics.json").read_text())
    results = json.loads((Path(cfg32.paths.run_dir) / "xai" / "results.json").read_text())
    for method in METHODS:
        # bf16 may turn one near-tie (label, image) pair; in a macro average over classes one pair weighs at
        # most 100 / (pairs of the smallest class x classes): the tolerance, or a point when that is less
        pairs = [n for n in results["methods"][method]["pairs"].values() if n > 0]
        tolerance = max(1.0, 100.0 / (min(pairs) * len(pairs)) + 1e-6)
        for key in KEYS:
            name = f"xai/{method}/{key}"
            if math.isnan(reference[name]):
                continue
            assert abs(metrics[name] - reference[name]) < tolerance, name



def test_images_are_explained_at_the_classifiers_training_size():
    from wsss.stages.xai import explained_size

    trained = {"dataset": {"crop_size": 224}}
    assert explained_size("classifier", trained, {"crop_size": 448}) == 224  # a VGG16 recipe on voc07 (448)
    assert explained_size("classifier", {}, {"crop_size": 448}) == 448      # no saved config: the data set's
    assert explained_size(96, trained, {"crop_size": 448}) == 96
    assert explained_size(None, trained, {"crop_size": 448}) is None
    for bad in ("classifer", 0, -3, True):
        with pytest.raises(ValueError, match="stage.image_size=.*expected 'classifier'"):
            explained_size(bad, trained, {"crop_size": 448})
