"""Planet (Amazon from Space) parsed from a tiny tree in the Kaggle layout: train_v2.csv + train-jpg chips."""
import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from wsss.data.datasets import build_split
from wsss.data.planet import PLANET_CLASSES, PlanetDataset, seeded_split

TAGS = {f"train_{i}": tags for i, tags in enumerate([
    "haze primary", "agriculture clear primary water", "clear primary", "clear primary",
    "agriculture clear habitation primary road", "haze primary water", "agriculture clear cultivation primary water",
    "haze primary", "agriculture clear cultivation primary", "artisinal_mine clear primary slash_burn",
])}


def write_planet(root, tags=TAGS, size=8):
    (root / "train-jpg").mkdir(parents=True)
    lines = ["image_name,tags"] + [f"{name},{t}" for name, t in tags.items()]
    (root / "train_v2.csv").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    for name in tags:
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "train-jpg" / f"{name}.jpg")
    return root


def test_labels_are_the_csv_tags(tmp_path):
    ds = PlanetDataset(write_planet(tmp_path), "all", fractions={"all": 1.0})
    assert ds.classes == PLANET_CLASSES and ds.num_classes == 17
    assert sorted(ds.ids) == sorted(TAGS)
    for name, tags in TAGS.items():
        assert {PLANET_CLASSES[c] for c in np.flatnonzero(ds.label(name))} == set(tags.split())
    assert ds.label("train_9")[PLANET_CLASSES.index("artisinal_mine")] == 1
    sample = ds[0]
    assert sample.image.shape == (8, 8, 3) and sample.image.dtype == np.uint8 and sample.mask is None
    assert not ds.has_masks


def test_seeded_split_is_a_deterministic_partition(tmp_path):
    write_planet(tmp_path)
    train, val = (PlanetDataset(tmp_path, s) for s in ("train", "val"))
    assert (len(train), len(val)) == (7, 3)  # 70 % / 30 % of 10
    assert not set(train.ids) & set(val.ids) and set(train.ids) | set(val.ids) == set(TAGS)
    assert PlanetDataset(tmp_path, "train").ids == train.ids
    ids = [f"x{i}" for i in range(200)]
    assert seeded_split(ids, "a", {"a": 0.5, "b": 0.5}, seed=0) != seeded_split(ids, "a", {"a": 0.5, "b": 0.5}, seed=1)
    parts = [seeded_split(ids, s, {"a": 0.6, "b": 0.25, "c": 0.1}, seed=3) for s in "abc"]
    assert [len(p) for p in parts] == [120, 50, 20]  # 10 ids are left over (fractions sum to 0.95)
    assert len(set().union(*map(set, parts))) == 190


def test_errors_name_the_missing_or_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        PlanetDataset(tmp_path / "nowhere", "train")
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train-jpg: Planet image folder is missing"):
        PlanetDataset(tmp_path / "empty", "train")
    tmp_path.joinpath("empty", "train-jpg").mkdir()
    with pytest.raises(FileNotFoundError, match="train_v2.csv: label CSV is missing"):
        PlanetDataset(tmp_path / "empty", "train")
    write_planet(tmp_path / "ok")
    with pytest.raises(ValueError, match=r"split 'test' is not one of the splits of .*train_v2.csv \(train, val\)"):
        PlanetDataset(tmp_path / "ok", "test")
    with pytest.raises(ValueError, match="must be positive and sum to at most 1"):
        PlanetDataset(tmp_path / "ok", "train", fractions={"train": 0.8, "val": 0.3})
    write_planet(tmp_path / "bad", tags={"train_0": "clear primary lava"})
    with pytest.raises(ValueError, match=r"image 'train_0' has tags \['lava'\]"):
        PlanetDataset(tmp_path / "bad", "train")
    (tmp_path / "ok" / "train_v2.csv").write_text("name,labels\ntrain_0,clear\n")
    with pytest.raises(ValueError, match="expected 'image_name' and 'tags'"):
        PlanetDataset(tmp_path / "ok", "train")


def test_config_composes_and_builds_the_split(make_cfg, tmp_path):
    root = write_planet(tmp_path / "planet")
    cfg = make_cfg("dataset=planet", f"dataset.args.root={root}", tiny=False)
    assert cfg.dataset.num_classes == 17
    plain = OmegaConf.to_container(cfg.dataset, resolve=True)
    train, val = build_split(plain, cfg.dataset.train_split), build_split(plain, cfg.dataset.val_split)
    assert isinstance(train, PlanetDataset) and (len(train), len(val)) == (7, 3)


def test_xai_recipe_trains_on_planet(fit_tiny, tmp_path):
    """End to end: the A.1.2 recipe (shrunk to ResNet-18 at 32 px) reads the chips through the data module."""
    root = write_planet(tmp_path / "planet", size=32)
    metrics, run_dir = fit_tiny("experiment=xai_planet_resnet101", f"dataset.args.root={root}")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
