"""Bad input fails up front with a message naming the file, key or value and what was expected."""
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from PIL import Image

from tests.helpers import compose_config
from tests.reliability.common import SMALL
from wsss.artifacts import PALETTE, ArtifactDir
from wsss.data.datamodule import WSSSDataModule
from wsss.data.scan import DataScanError, scan
from wsss.stages.affinity import load_backbone_from

TRAIN_EVAL = ["fit", "predict", "evaluate"]


@pytest.fixture
def data(tmp_path, data_dir):
    """A private copy of the small synthetic set (the session's copy must stay intact)."""
    cfg = compose_config(tmp_path / "run", data_dir, SMALL, tiny=False)
    plain = OmegaConf.to_container(cfg, resolve=True)
    root = Path(WSSSDataModule(plain["dataset"], 4, (0,) * 3, (1,) * 3).split("train").root)
    copy = tmp_path / "data" / root.name
    shutil.copytree(root, copy)
    cfg = compose_config(tmp_path / "run", tmp_path / "data", SMALL, tiny=False)
    return OmegaConf.to_container(cfg, resolve=True), copy


def check(plain, tasks=TRAIN_EVAL, cache=None):
    dm = WSSSDataModule(plain["dataset"], 4, (0,) * 3, (1,) * 3)
    return scan(dm, plain, tasks, cache)


def write_mask(path: Path, mask: np.ndarray) -> None:
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette(PALETTE)
    img.save(path)


def test_clean_data_passes_and_is_cached(data, tmp_path):
    plain, root = data
    assert check(plain, cache=tmp_path / "scan") == {"train": 16, "val": 4}
    assert len(list((tmp_path / "scan").glob("*.json"))) == 2
    # a cached pass is not repeated; a changed file invalidates the cache
    image = root / "JPEGImages" / "val_00017.png"
    image.write_bytes(image.read_bytes()[:100])
    with pytest.raises(DataScanError, match="val_00017.png: corrupt or truncated image"):
        check(plain, cache=tmp_path / "scan")


def test_truncated_png_and_jpeg(data):
    plain, root = data
    png = root / "JPEGImages" / "train_00002.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    jpg = root / "JPEGImages" / "train_00005.jpg"
    Image.open(root / "JPEGImages" / "train_00005.png").convert("RGB").save(jpg, quality=90)
    (root / "JPEGImages" / "train_00005.png").unlink()
    jpg.write_bytes(jpg.read_bytes()[:-300])
    with pytest.raises(DataScanError) as e:
        check(plain, ["fit"])
    msg = str(e.value)
    assert "split 'train': 2 problems in 16 images" in msg
    assert f"{png}: corrupt or truncated image" in msg and f"{jpg}: truncated JPEG" in msg


def test_missing_image(data):
    plain, root = data
    (root / "JPEGImages" / "val_00018.png").unlink()
    with pytest.raises(DataScanError, match=r"val_00018.jpg: image file is missing"):
        check(plain, ["predict"])


def test_missing_mask_where_evaluate_needs_it(data):
    plain, root = data
    (root / "SegmentationClass" / "val_00016.png").unlink()
    check(plain, ["fit"])  # training does not read masks
    with pytest.raises(DataScanError, match=r"val_00016.png: mask of 'val_00016' is missing \(needed to evaluate"):
        check(plain, ["evaluate"])


def test_mask_values_outside_the_class_range(data):
    plain, root = data
    path = root / "SegmentationClass" / "val_00019.png"
    mask = np.asarray(Image.open(path)).copy()
    mask[0, :3] = [6, 9, 255]  # 5 classes: 0..5 and 255 are valid
    write_mask(path, mask)
    with pytest.raises(DataScanError, match=r"val_00019.png: mask values \[6, 9\] are outside 0..5"):
        check(plain, ["evaluate"])


def test_mask_of_another_size(data):
    plain, root = data
    path = root / "SegmentationClass" / "val_00016.png"
    write_mask(path, np.zeros((30, 32), np.uint8))
    with pytest.raises(DataScanError, match=r"val_00016.png: mask is 30x32 but its image is 32x32"):
        check(plain, ["evaluate"])


def test_empty_label_set_in_training(data):
    plain, root = data
    (root / "Annotations" / "train_00001.xml").write_text("<annotation></annotation>\n")
    check(plain, ["predict"])  # predicting an unlabelled image is fine
    with pytest.raises(DataScanError, match=r"image 'train_00001' has an empty label set"):
        check(plain, ["fit"])


def test_the_run_fails_before_training_and_scan_false_skips(data, tmp_path):
    from wsss.tasks import run

    plain, root = data
    (root / "Annotations" / "train_00001.xml").write_text("<annotation></annotation>\n")
    cfg = compose_config(tmp_path / "run", tmp_path / "data", [*SMALL, "tasks=[fit]"], tiny=False)
    with pytest.raises(DataScanError, match="train_00001"):
        run(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
    cfg = compose_config(tmp_path / "run", tmp_path / "data", [*SMALL, "tasks=[fit]", "dataset.scan=false",
                                                               "stage.max_epochs=1"], tiny=False)
    run(cfg)  # skipped: the data module then leaves that image out of training with a warning


@pytest.mark.parametrize("override, expected", [
    ("stage=clasifier", r"Could not find 'stage/clasifier'"),
    ("backbone=resnet5", r"Could not find 'backbone/resnet5'"),
    ("stage.lrr=0.1", r"Could not override 'stage.lrr'"),
    ("trainer.max_epoch=3", r"Could not override 'trainer.max_epoch'"),
])
def test_config_typos_name_the_key(tmp_path, data_dir, override, expected):
    with pytest.raises(ConfigCompositionException, match=expected) as e:
        compose_config(tmp_path / "run", data_dir, [override])
    if "Could not find" in expected:
        assert "Available options" in str(e.value) or "Available options" in str(e.value.__cause__)


def test_unknown_backbone_name_value(tmp_path, data_dir):
    from wsss.tasks import run

    with pytest.raises((ValueError, KeyError, RuntimeError), match="resnet5"):
        run(compose_config(tmp_path / "run", data_dir, [*SMALL, "backbone.name=resnet5"], tiny=False))


def test_artifacts_of_another_dataset_or_split(tmp_path):
    cams = ArtifactDir(tmp_path / "cams" / "val", ".npz")
    with pytest.raises(FileNotFoundError, match=r"no manifest.json.*\(run stage=classifier first\)"):
        cams.check({"dataset": "voc12", "split": "val"}, producer_hint="stage=classifier")
    cams.write_npz("a", keys=np.zeros(1, np.int64), cams=np.zeros((1, 2, 2), np.float16))
    cams.write_manifest(stage="classifier", dataset="synthetic", split="val")
    with pytest.raises(ValueError, match=r"made for dataset='synthetic', but this stage expects dataset='voc12'"):
        cams.check({"dataset": "voc12", "split": "val"})
    with pytest.raises(ValueError, match=r"made for split='val', but this stage expects split='train'"):
        cams.check({"dataset": "synthetic", "split": "train"})
    assert cams.check({"dataset": "synthetic", "split": "val"})["count"] == 1


def test_checkpoint_of_another_class_count(tmp_path, data_dir):
    from hydra.utils import get_class

    def stage(n):
        cfg = compose_config(tmp_path / "run", data_dir, [*SMALL, f"dataset.args.num_classes={n}"], tiny=False)
        plain = OmegaConf.to_container(cfg, resolve=True)
        return get_class(plain["stage"]["_target_"])(plain)

    ckpt = tmp_path / "five.ckpt"
    torch.save({"state_dict": stage(5).state_dict()}, ckpt)
    with pytest.raises(ValueError, match=r"five.ckpt: checkpoint classifies 5 classes but dataset 'synthetic' has 3"):
        stage(3).load_weights(ckpt)


def test_run_identity_ignores_how_it_runs_but_not_what_it_computes():
    """Resuming after a pre-emption with more frequent checkpoints or another NaN policy is the same run."""
    from wsss.identity import training_identity

    base = {"stage": {"name": "classifier", "lr": 0.1}, "dataset": {"name": "synthetic"}, "seed": 0,
            "checkpoint_every_n_steps": None, "on_nonfinite_loss": "error", "trainer": {"devices": 1}}
    same = {**base, "checkpoint_every_n_steps": 100, "on_nonfinite_loss": "skip", "trainer": {"devices": 4}}
    assert training_identity(same) == training_identity(base)
    assert training_identity({**base, "seed": 1}) != training_identity(base)
    assert training_identity({**base, "stage": {"name": "classifier", "lr": 0.2}}) != training_identity(base)


# -- labels meeting metrics -------------------------------------------------------------------------
def test_confusion_matrices_refuse_values_outside_the_classes():
    from wsss.metrics.segmentation import confusion_matrices, confusion_matrix

    target = torch.tensor([0, 1, 2, 255, 2])
    pred = torch.tensor([0, 2, 2, 9, 1])  # 9 sits on an ignored pixel: not counted, not an error
    by_hand = [[1, 0, 0], [0, 0, 1], [0, 1, 1]]  # rows = ground truth, columns = prediction
    assert confusion_matrix(pred, target, 3).tolist() == by_hand
    assert confusion_matrices(pred[None], target, 3)[0].tolist() == by_hand
    for counts in (lambda p, t: confusion_matrix(p, t, 3), lambda p, t: confusion_matrices(p[None], t, 3)):
        with pytest.raises(ValueError, match=r"the prediction holds the value 5, outside the class indices 0..2"):
            counts(torch.tensor([5, 1, 2, 0, 2]), target)  # once counted as a true positive of class 1
        with pytest.raises(ValueError, match=r"the prediction holds the value -1"):
            counts(torch.tensor([-1, 1, 2, 0, 2]), target)
        with pytest.raises(ValueError, match=r"the ground truth holds the value 3"):
            counts(pred, torch.tensor([3, 1, 2, 255, 2]))


def test_cams_of_another_class_list_name_the_cam_file(data):
    from wsss.cams.evaluate import sweep

    plain, root = data
    ds = WSSSDataModule(plain["dataset"], 4, (0,) * 3, (1,) * 3).split("val")
    cams = ArtifactDir(root.parent / "cams" / "val", ".npz")
    for image_id in ds.ids:  # 5 classes; a CAM of class index 7 comes from a model of another data set
        cams.write_npz(image_id, keys=np.array([7], np.int64), cams=np.ones((1, 32, 32), np.float16))
    with pytest.raises(ValueError, match=rf"cams/val/{ds.ids[0]}.npz against .*{ds.ids[0]}.png: the prediction "
                                         r"holds the value 8, outside the class indices 0..5"):
        sweep(ds, cams.root, [0.5])


# -- hyperparameters --------------------------------------------------------------------------------
@pytest.mark.parametrize("override, expected", [
    ("stage.batch_size=0", "stage.batch_size=0: expected an integer >= 1"),
    ("stage.lr=-0.1", "stage.lr=-0.1: expected a number >= 0"),
    ("stage.lr=abc", "stage.lr='abc': expected a number >= 0"),
    ("stage.weight_decay=-1e-4", "stage.weight_decay=-0.0001: expected a number >= 0"),
    ("stage.max_epochs=0", "stage.max_epochs=0: expected an integer >= 1"),
    ("stage.momentum=1.5", "stage.momentum=1.5: expected a number in [0, 1)"),
    ("stage.lr_alpha_new=-10", "stage.lr_alpha_new=-10: expected a number >= 0"),
    ("stage.batch_scope=globl", "stage.batch_scope='globl': expected 'device' (per device) or 'global'"),
    ("num_workers=-2", "num_workers=-2: expected an integer >= 0"),
    ("dataset.crop_size=0", "dataset.crop_size=0: expected an integer >= 1"),
    ("dataset.min_size=40", "dataset.min_size=40 > dataset.max_size=36"),
])
def test_bad_numeric_hyperparameters_name_the_key(tmp_path, data_dir, override, expected):
    from wsss.tasks import run

    with pytest.raises(ValueError, match=re.escape(expected)):
        run(compose_config(tmp_path / "run", data_dir, [*SMALL, override], tiny=False))
    assert not (tmp_path / "run" / "run.json").exists()


def test_nested_stage_keys_are_checked_by_name(tmp_path, data_dir):
    from wsss.hyperparameters import hyperparameter_problems

    plain = OmegaConf.to_container(compose_config(tmp_path / "run", data_dir, ["stage=pnoc", "stage.noc.lr_factor=0"]),
                                   resolve=True)
    assert hyperparameter_problems(plain) == ["stage.noc.lr_factor=0: expected a positive number"]


# -- checkpoints of another backbone ----------------------------------------------------------------
@pytest.mark.parametrize("stage_name, load", [
    ("classifier", lambda module, path: module.load_weights(path)),
    ("occse", lambda module, path: module.load_oc(path)),  # the ordinary classifier of OC-CSE / P-OC / P-NOC
    ("affinity", lambda module, path: load_backbone_from(module.net.backbone, path, module.cfg["backbone"]["name"])),
])
def test_checkpoint_of_another_backbone_names_file_and_backbones(tmp_path, data_dir, stage_name, load):
    from hydra.utils import get_class

    def stage(name, *overrides):
        cfg = compose_config(tmp_path / "run", data_dir, [*SMALL, f"stage={name}", *overrides], tiny=False)
        plain = OmegaConf.to_container(cfg, resolve=True)
        return get_class(plain["stage"]["_target_"])(plain)

    trained = stage("classifier")
    ckpt = tmp_path / "resnet18.ckpt"
    torch.save({"state_dict": trained.state_dict(), "hyper_parameters": {"cfg": trained.cfg}}, ckpt)
    for other, why in (("resnet34", "missing"), ("resnet50", "of another shape")):
        with pytest.raises(ValueError) as e:
            fits_the_crop = ["stage.radius=4"] if stage_name == "affinity" else []  # the small test crop
            load(stage(stage_name, f"backbone.name={other}", *fits_the_crop), ckpt)
        msg = str(e.value)
        assert f"{ckpt}' does not fit the configured model (backbone={other}): saved with backbone 'resnet18'" in msg
        assert why in msg and "Run with backbone=resnet18." in msg and len(msg) < 600


def test_resuming_fit_from_another_backbones_checkpoint_names_it(tmp_path, data_dir):
    """`ckpt_path=<file>` of another run is checked before Lightning restores it (was a state-dict dump)."""
    from hydra.utils import get_class

    from wsss.tasks import run

    cfg = compose_config(tmp_path / "run", data_dir, [*SMALL, "stage=classifier"], tiny=False)
    plain = OmegaConf.to_container(cfg, resolve=True)
    trained = get_class(plain["stage"]["_target_"])(plain)
    ckpt = tmp_path / "resnet18.ckpt"
    torch.save({"state_dict": trained.state_dict(), "hyper_parameters": {"cfg": trained.cfg}}, ckpt)
    other = compose_config(tmp_path / "other", data_dir, [*SMALL, "stage=classifier", "backbone.name=resnet34",
                                                          "tasks=[fit]", f"ckpt_path={ckpt}"], tiny=False)
    with pytest.raises(ValueError, match=re.escape(f"ckpt_path='{ckpt}' does not fit the configured model "
                                                   "(backbone=resnet34): saved with backbone 'resnet18'")):
        run(other)
