"""Human Protein Atlas parsed from a tiny tree in the Kaggle layout: train.csv + four stain PNGs per sample."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from wsss.data.datamodule import WSSSDataModule
from wsss.data.datasets import build_split
from wsss.data.hpa import HPA_CLASSES, HPADataset, composite_rgb

TARGETS = {"00070df0-bbc3-11e8-b2bc-ac1f6b6435d0": "16 0", "000a6c98-bb9b-11e8-b2b9-ac1f6b6435d0": "7 1 2 0",
           "000a9596-bbc4-11e8-b2bc-ac1f6b6435d0": "5", "000c99ba-bba4-11e8-b2b9-ac1f6b6435d0": "1",
           "001838f8-bbca-11e8-b2bc-ac1f6b6435d0": "18", "001bcdd2-bbb2-11e8-b2ba-ac1f6b6435d0": "0",
           "0020af02-bbba-11e8-b2ba-ac1f6b6435d0": "25 2", "002679c2-bbb6-11e8-b2ba-ac1f6b6435d0": "0",
           "00285ce4-bba0-11e8-b2b9-ac1f6b6435d0": "27 0", "002daad6-bbc9-11e8-b2bc-ac1f6b6435d0": "7"}
STAINS = ("red", "green", "blue", "yellow")


def stain_value(sample: int, stain: int, size: int) -> np.ndarray:
    """A distinct, reproducible plane per (sample, stain), covering the saturating range."""
    rng = np.random.default_rng(100 * sample + stain)
    return rng.integers(0, 256, (size, size), dtype=np.uint8)


def write_hpa(root, targets=TARGETS, size=8):
    (root / "train").mkdir(parents=True)
    (root / "train.csv").write_text("Id,Target\n" + "".join(f"{i},{t}\n" for i, t in targets.items()))
    for k, image_id in enumerate(targets):
        for s, stain in enumerate(STAINS):
            Image.fromarray(stain_value(k, s, size), mode="L").save(root / "train" / f"{image_id}_{stain}.png")
    return root


def test_four_channel_stack_and_labels(tmp_path):
    ds = HPADataset(write_hpa(tmp_path), "all", fractions={"all": 1.0})
    assert ds.classes == HPA_CLASSES and ds.num_classes == 28 and not ds.has_masks
    for k, (image_id, target) in enumerate(TARGETS.items()):
        assert set(np.flatnonzero(ds.label(image_id))) == {int(t) for t in target.split()}
        image = ds.load_image(image_id)
        assert image.shape == (8, 8, 4) and image.dtype == np.uint8
        for s in range(4):  # channel order red, green, blue, yellow
            assert np.array_equal(image[..., s], stain_value(k, s, 8))
    assert ds.image_path(ds.ids[0]).name.endswith("_red.png")


def test_rgb_composite_adds_half_the_yellow_to_red_and_green(tmp_path):
    ds = HPADataset(write_hpa(tmp_path), "all", channels=3, fractions={"all": 1.0})
    image_id = next(iter(TARGETS))
    rgb = ds.load_image(image_id)
    r, g, b, y = (stain_value(0, s, 8).astype(int) for s in range(4))
    assert rgb.shape == (8, 8, 3)
    assert np.array_equal(rgb[..., 0], np.minimum(r + y // 2, 255))
    assert np.array_equal(rgb[..., 1], np.minimum(g + y // 2, 255))
    assert np.array_equal(rgb[..., 2], b)
    one = lambda v: np.full((1, 1), v, np.uint8)  # noqa: E731
    assert composite_rgb(one(250), one(10), one(7), one(21)).ravel().tolist() == [255, 20, 7]  # saturates


def test_sixteen_bit_and_tinted_stains_become_eight_bit_planes(tmp_path):
    write_hpa(tmp_path)
    image_id = next(iter(TARGETS))
    plane16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(plane16).save(tmp_path / "train" / f"{image_id}_green.png")  # mode I;16
    tinted = np.zeros((8, 8, 3), np.uint8)
    tinted[..., 0] = tinted[..., 1] = stain_value(0, 3, 8)  # a yellow-tinted colour file
    Image.fromarray(tinted).save(tmp_path / "train" / f"{image_id}_yellow.png")
    image = HPADataset(tmp_path, "all", fractions={"all": 1.0}).load_image(image_id)
    assert np.array_equal(image[..., 1], np.round(plane16 / 257).astype(np.uint8))
    assert np.array_equal(image[..., 3], stain_value(0, 3, 8))


def test_errors_name_the_missing_or_bad_input(tmp_path):
    with pytest.raises(ValueError, match="channels=2"):
        HPADataset(tmp_path, "train", channels=2)
    with pytest.raises(FileNotFoundError, match="train: HPA image folder is missing"):
        HPADataset(tmp_path, "train")
    root = write_hpa(tmp_path / "ok")
    with pytest.raises(ValueError, match=r"split 'test' is not one of the splits"):
        HPADataset(root, "test")
    image_id = next(iter(TARGETS))
    (root / "train" / f"{image_id}_blue.png").unlink()
    with pytest.raises(FileNotFoundError, match=f"{image_id}_blue.png: stain image is missing"):
        HPADataset(root, "all", fractions={"all": 1.0}).load_image(image_id)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "train" / f"{image_id}_blue.png")
    with pytest.raises(ValueError, match="differ in size"):
        HPADataset(root, "all", fractions={"all": 1.0}).load_image(image_id)
    write_hpa(tmp_path / "bad", targets={"a": "3 28"})
    with pytest.raises(ValueError, match=r"sample 'a' has Target '28'; expected a class index 0..27"):
        HPADataset(tmp_path / "bad", "train")


def test_config_composes_builds_the_split_and_feeds_four_channel_batches(make_cfg, tmp_path):
    root = write_hpa(tmp_path / "hpa", size=32)
    cfg = make_cfg("dataset=hpa", f"dataset.args.root={root}", "dataset.crop_size=32", "dataset.min_size=32",
                   "dataset.max_size=32", tiny=False)
    assert cfg.dataset.num_classes == 28 and cfg.dataset.in_chans == 4
    plain = OmegaConf.to_container(cfg.dataset, resolve=True)
    train, val = build_split(plain, "train"), build_split(plain, "val")
    assert isinstance(train, HPADataset) and (len(train), len(val)) == (9, 1)
    # the data module carries 4 channels through once it is given 4-channel statistics
    mean, std = (0.485, 0.456, 0.406, 0.485), (0.229, 0.224, 0.225, 0.229)
    dm = WSSSDataModule(plain, batch_size=3, mean=mean, std=std, augment={"hflip": True})
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (3, 4, 32, 32) and batch["label"].shape == (3, 28)
    val_batch = next(iter(dm.val_dataloader()))
    raw = torch.from_numpy(val.load_image(val.ids[0]).astype(np.float32) / 255)
    expected = ((raw - torch.tensor(mean)) / torch.tensor(std)).permute(2, 0, 1)  # yellow normalised with red's stats
    assert val_batch["image"].shape == (1, 4, 32, 32)
    assert torch.allclose(val_batch["image"][0], expected, atol=1e-5)
    three = make_cfg("dataset=hpa", f"dataset.args.root={root}", "dataset.args.channels=3", tiny=False)
    assert three.dataset.in_chans == 3
    assert build_split(OmegaConf.to_container(three.dataset, resolve=True), "val").load_image(val.ids[0]).shape[2] == 3
