"""DeepGlobe land cover parsed from a tiny tree in the challenge layout: <id>_sat.jpg + RGB <id>_mask.png."""
import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from wsss.data.datamodule import WSSSDataModule
from wsss.data.datasets import build_split
from wsss.data.deepglobe import DEEPGLOBE_COLORS, DeepGlobeDataset

COLORS = DEEPGLOBE_COLORS
# per tile: the classes painted, one row each (row 0 onwards); the rest of the tile is agriculture
TILES = {"100694": ["urban_land", "water"], "102122": ["forest_land", "barren_land", "unknown"],
         "10452": ["rangeland"], "10901": [], "119": ["urban_land", "rangeland", "forest_land", "water"],
         "120245": ["barren_land"], "121": ["water"], "127660": ["unknown", "forest_land"]}
H = W = 8


def write_deepglobe(root, tiles=TILES, noisy=True):
    (root / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for tile_id, names in tiles.items():
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / "train" / f"{tile_id}_sat.jpg")
        mask = np.empty((H, W, 3), np.uint8)
        mask[:] = COLORS["agriculture_land"]
        for row, name in enumerate(names):
            mask[row] = COLORS[name]
        if noisy:  # compression-like noise: off-by-a-few values must still map to their class
            mask[-1, 0] = (250, 3, 252)      # rangeland
            mask[-1, 1] = (255, 0, 0)        # red: no class -> ignore
        Image.fromarray(mask).save(root / "train" / f"{tile_id}_mask.png")
    return root


def expected_mask(names, classes, background="agriculture_land", noisy=True):
    index = {c: k + 1 for k, c in enumerate(classes)}
    if background:
        index[background] = 0
    mask = np.full((H, W), index["agriculture_land"], np.uint8)
    for row, name in enumerate(names):
        mask[row] = index[name]
    if noisy:
        mask[-1, 0], mask[-1, 1] = index["rangeland"], 255
    return mask


def test_masks_map_colours_to_classes_with_agriculture_as_background(tmp_path):
    ds = DeepGlobeDataset(write_deepglobe(tmp_path), "all", fractions={"all": 1.0})
    assert ds.classes == ("urban_land", "rangeland", "forest_land", "water", "barren_land", "unknown")
    assert sorted(ds.ids) == sorted(TILES) and ds.has_masks
    for tile_id, names in TILES.items():
        mask = ds.load_mask(tile_id)
        assert np.array_equal(mask, expected_mask(names, ds.classes))
        expected = set(names) | {"rangeland"}  # the noisy rangeland pixel counts
        assert {ds.classes[c] for c in np.flatnonzero(ds.label(tile_id))} == expected
    sample = ds[0]
    assert sample.image.shape == (H, W, 3) and sample.mask.shape == (H, W)


def test_all_seven_classes_as_foreground_and_ignored_classes(tmp_path):
    write_deepglobe(tmp_path)
    seven = DeepGlobeDataset(tmp_path, "all", fractions={"all": 1.0}, background=None)
    assert seven.classes == tuple(COLORS) and seven.num_classes == 7
    assert np.array_equal(seven.load_mask("100694"), expected_mask(TILES["100694"], seven.classes, background=None))
    assert seven.label("10901")[seven.classes.index("agriculture_land")] == 1
    no_unknown = DeepGlobeDataset(tmp_path, "all", fractions={"all": 1.0}, ignore=["unknown"])
    assert "unknown" not in no_unknown.classes and no_unknown.num_classes == 5
    assert (no_unknown.load_mask("127660")[0] == 255).all()  # row 0 is unknown
    strict = DeepGlobeDataset(tmp_path, "all", fractions={"all": 1.0}, min_pixels=2)
    assert strict.label("10901").sum() == 0  # one noisy rangeland pixel is not enough


def test_split_files_win_over_the_seeded_split(tmp_path):
    write_deepglobe(tmp_path)
    train, test = DeepGlobeDataset(tmp_path, "train"), DeepGlobeDataset(tmp_path, "test")
    assert (len(train), len(test)) == (6, 2) and set(train.ids) | set(test.ids) == set(TILES)
    assert not set(train.ids) & set(test.ids)
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train75.txt").write_text("119\n121\n")
    assert DeepGlobeDataset(tmp_path, "train75").ids == ["119", "121"]


def test_errors_name_the_missing_or_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        DeepGlobeDataset(tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match="train: DeepGlobe image folder is missing"):
        DeepGlobeDataset(tmp_path, "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="no <id>_sat.jpg image to split"):
        DeepGlobeDataset(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"splits/valid.txt: split 'valid' has no split file"):
        DeepGlobeDataset(tmp_path, "valid")
    with pytest.raises(ValueError, match=r"\['farmland'\] unknown"):
        DeepGlobeDataset(tmp_path, "train", background="farmland")
    root = write_deepglobe(tmp_path / "ok")
    (root / "train" / "121_mask.png").unlink()
    ds = DeepGlobeDataset(root, "all", fractions={"all": 1.0})
    assert ds.load_mask("121") is None
    with pytest.raises(FileNotFoundError, match="121_mask.png: mask of '121' is missing"):
        ds.label("121")


def test_config_composes_builds_the_split_and_skips_unlabelled_tiles(make_cfg, tmp_path):
    root = write_deepglobe(tmp_path / "dg", noisy=False)
    cfg = make_cfg("dataset=deepglobe", f"dataset.args.root={root}", "dataset.crop_size=8", "dataset.min_size=8",
                   "dataset.max_size=8", tiny=False)
    assert cfg.dataset.num_classes == 6
    plain = OmegaConf.to_container(cfg.dataset, resolve=True)
    train = build_split(plain, "train")
    assert isinstance(train, DeepGlobeDataset) and len(train) == 6 and "10901" in train.ids
    dm = WSSSDataModule(plain, batch_size=8, mean=(0.5,) * 3, std=(0.5,) * 3, augment={"hflip": False})
    ids = [i for batch in dm.train_dataloader() for i in batch["id"]]
    assert sorted(ids) == sorted(i for i in train.ids if TILES[i])  # the all-agriculture tile has no label
