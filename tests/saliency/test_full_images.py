"""`stage.train_images=full`: the saliency network trains on each image at its own size, as the thesis code's
PoolNet loader does (lucasdavid/PNOC@f250e0d poolnet/dataset/dataset.py: no resize, no crop, a horizontal flip
of image and target with p 0.5, batch 1, images with a side <= 100 skipped by poolnet/solver.py)."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.fixtures.voc_layout import VOC_TINY
from tests.helpers import compose_config
from wsss.artifacts import ArtifactDir
from wsss.data.voc import VOCDataset
from wsss.saliency.data import PseudoSaliencySplit, SaliencyDataModule, full_image_transform

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
H, W = 37, 53  # odd, not square


class _Split:
    def __init__(self, images):
        self.images, self.ids = images, list(images)

    def load_image(self, i):
        return self.images[i]

    def label(self, i):
        return np.array([1.0, 0.0], np.float32)


def _known_image() -> np.ndarray:
    """Red = 4·column, green = 5·row, blue = 100: each pixel's position can be read from its colour."""
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([4 * xx, 5 * yy, np.full_like(xx, 100)], -1).astype(np.uint8)


def _pseudo_saliency(tmp_path, masks: dict[str, np.ndarray], dataset: str, split: str) -> Path:
    """A finished pseudo-saliency folder ({0, 255} PNGs), as the ccam stage writes; returns its kind root."""
    art = ArtifactDir(tmp_path / "pseudo_saliency" / split, ".png")
    for image_id, m in masks.items():
        art.write_png(image_id, np.where(m, 255, 0).astype(np.uint8))
    art.write_manifest(ids=list(masks), stage="ccam", kind="pseudo_saliency", dataset=dataset, split=split)
    return tmp_path / "pseudo_saliency"


def _rgb255(image: torch.Tensor) -> torch.Tensor:
    """The loader's normalised (3, H, W) image back on the 0..255 scale."""
    return torch.round((image * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]) * 255)


def test_full_image_keeps_its_size_and_pixels_and_flips_with_its_target(tmp_path):
    image = _known_image()
    target = np.zeros((H, W), bool)
    target[5:20, 3:11] = True  # off-centre: a flip moves it to columns W-11..W-4
    folder = _pseudo_saliency(tmp_path, {"x": target}, "fake", "train")
    ds = PseudoSaliencySplit(_Split({"x": image}), ArtifactDir(folder / "train", ".png"),
                             full_image_transform(MEAN, STD), ["x"])
    want_rgb = torch.from_numpy(image).permute(2, 0, 1).float()
    flips = []
    for _ in range(40):
        item = ds[0]
        assert item["image"].shape == (3, H, W) and item["mask"].shape == (H, W)
        rgb = _rgb255(item["image"])
        flipped = bool(torch.equal(rgb, want_rgb.flip(-1)))
        assert flipped or torch.equal(rgb, want_rgb), "the image is neither the original nor its mirror"
        want_mask = torch.from_numpy(target.astype(np.int64))
        assert torch.equal(item["mask"], want_mask.flip(-1) if flipped else want_mask), "target ≠ image"
        flips.append(flipped)
    assert 0 < sum(flips) < len(flips)  # p 0.5, as the thesis code's cv_random_flip: both seen in 40 draws


def test_full_image_without_hflip_is_the_image_itself(tmp_path):
    image = _known_image()
    out = full_image_transform(MEAN, STD, hflip=False)(image=image, mask=np.zeros((H, W), np.uint8))
    rgb = torch.from_numpy(image).permute(2, 0, 1) / 255.0
    want = (rgb - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    assert torch.allclose(out["image"], want, atol=1e-6)


def _voc_module(voc_root, folder, batch_size=1, min_side=0, train_images="full"):
    dataset = OmegaConf.to_container(compose_config(Path("/nonexistent/run"), Path("/nonexistent"), [
        *VOC_TINY, f"dataset.args.root={voc_root}", "dataset.scan=false"], tiny=False).dataset, resolve=True)
    return SaliencyDataModule(dataset, batch_size, MEAN, STD, mode="pseudo_saliency", inputs=str(folder),
                              train_images=train_images, full_image_min_side=min_side)


def test_full_loader_on_voc_layout_gives_each_image_at_its_own_size(tmp_path, voc_root):
    split = VOCDataset(voc_root, "train_aug")
    shapes = {i: split.load_image(i).shape[:2] for i in split.ids}
    assert len(set(shapes.values())) > 1 and any(h != w for h, w in shapes.values())
    masks = {i: split.load_image(i)[..., 0] > 120 for i in split.ids}  # any {0, 1} map of the image's size
    folder = _pseudo_saliency(tmp_path, masks, "voc12", "train_aug")
    min_side = 80  # fixture sizes (72, 96), (96, 80), (88, 112), (80, 64), (64, 104): a side of 80 is kept
    dm = _voc_module(voc_root, folder, min_side=min_side)
    seen = {}
    for batch in dm.train_dataloader():
        (image_id,) = batch["id"]
        image, mask = batch["image"][0], batch["mask"][0]
        rgb = _rgb255(image)
        own = torch.from_numpy(split.load_image(image_id)).permute(2, 0, 1).float()
        flipped = bool(torch.equal(rgb, own.flip(-1)))
        assert flipped or torch.equal(rgb, own), image_id
        want = torch.from_numpy(masks[image_id].astype(np.int64))
        assert torch.equal(mask, want.flip(-1) if flipped else want), image_id
        seen[image_id] = tuple(image.shape[-2:])
    assert seen == {i: s for i, s in shapes.items() if min(s) >= min_side}
    assert 0 < len(seen) < len(shapes)  # the size rule left some out


def test_full_images_refuse_a_batch_size_above_one(tmp_path, voc_root):
    with pytest.raises(ValueError, match=r"stage.train_images=full .* stage.batch_size=2; expected 1"):
        _voc_module(voc_root, tmp_path, batch_size=2)
    with pytest.raises(ValueError, match=r"stage.train_images='tiles'; expected 'crop' or 'full'"):
        _voc_module(voc_root, tmp_path, train_images="tiles")
    _voc_module(voc_root, tmp_path, batch_size=2, train_images="crop")  # crops stack


def test_the_saliency_stage_passes_its_keys_to_the_loader(tmp_path, data_dir):
    from wsss.stages.saliency import SaliencyStage

    cfg = compose_config(tmp_path / "run", data_dir, ["stage=saliency", "stage.train_images=full",
                                                     "stage.batch_size=3"])
    stage = SaliencyStage(OmegaConf.to_container(cfg, resolve=True))
    with pytest.raises(ValueError, match="stage.batch_size=3"):
        stage.datamodule()


def test_training_loss_is_the_pixel_sum_per_image(tmp_path, data_dir):
    """Zero logits: BCE = ln 2 at every pixel; the step returns Σ pixels / batch, as the thesis code's
    BCE(sum) / (iter_size·batch) once Lightning divides by accumulate_grad_batches (= iter_size)."""
    from wsss.stages.saliency import SaliencyStage

    cfg = compose_config(tmp_path / "run", data_dir, ["stage=saliency", "stage.level_channels=[16,16,16,16]"])
    stage = SaliencyStage(OmegaConf.to_container(cfg, resolve=True))
    torch.nn.init.zeros_(stage.net.score.weight)
    torch.nn.init.zeros_(stage.net.score.bias)
    stage.log = lambda *a, **k: None
    for n in (1, 2):
        batch = {"id": [str(i) for i in range(n)], "image": torch.randn(n, 3, H, W),
                 "mask": torch.randint(0, 2, (n, H, W))}
        assert stage.training_step(batch, 0).item() == pytest.approx(H * W * math.log(2), rel=1e-5)


@pytest.mark.slow
def test_fit_on_full_voc_images(tmp_path, voc_root, monkeypatch):
    from wsss.stages.saliency import SaliencyStage
    from wsss.tasks import run

    shapes = []
    step = SaliencyStage.training_step

    def recording_step(self, batch, batch_idx):
        shapes.append(tuple(batch["image"].shape))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(SaliencyStage, "training_step", recording_step)

    split = VOCDataset(voc_root, "train_aug")
    maps = {i: split.load_image(i)[..., 0] > 120 for i in split.ids}
    folder = _pseudo_saliency(tmp_path, maps, "voc12", "train_aug")
    cfg = compose_config(tmp_path / "run", tmp_path, [
        *VOC_TINY, "stage=saliency", f"dataset.args.root={voc_root}",
        f"stage.inputs.pseudo_saliency={folder}",
        "stage.train_images=full", "stage.batch_size=1", "stage.full_image_min_side=0", "stage.max_epochs=1",
        "stage.level_channels=[16,16,16,16]", "++trainer.accumulate_grad_batches=4", "tasks=[fit]"],
        tiny=False)
    metrics = run(cfg)
    assert np.isfinite(metrics["train/loss"])
    own = {(1, 3, *split.load_image(i).shape[:2]) for i in split.ids}
    assert len(shapes) == len(split.ids) and set(shapes) == own  # every image once, at its own size
    assert (Path(cfg.paths.run_dir) / "checkpoints" / "last.ckpt").is_file()
