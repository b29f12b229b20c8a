"""COCO 2014/2017 parsed from tiny trees in the released layout (instances JSON, image folders, index masks)."""
import json
import logging

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from wsss.data import coco
from wsss.data.coco import COCO_CATEGORY_IDS, COCO_CLASSES, COCODataset
from wsss.data.datasets import build_split

# image id -> [(category id, iscrowd)]; 30 has no annotation at all
ANNOTATIONS = {9: [(1, 0), (90, 0), (3, 1)], 25: [(25, 0), (25, 0), (13, 0)], 30: []}


def full_categories():
    """All 80 categories, listed out of id order (as nothing guarantees the JSON's order)."""
    cats = [{"id": i, "name": n, "supercategory": "x"} for i, n in zip(COCO_CATEGORY_IDS, COCO_CLASSES)]
    return cats[::-1]


def write_coco(root, split, file_name, categories, annotations=ANNOTATIONS, size=(12, 16), masks=None):
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for image_id, objs in annotations.items():
        name = file_name.format(id=f"{image_id:012d}")
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / split / name)
        images.append({"id": image_id, "file_name": name, "height": size[0], "width": size[1]})
        for category_id, crowd in objs:
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": category_id, "iscrowd": crowd,
                         "bbox": [0, 0, 2, 2], "area": 4, "segmentation": []})
        if masks is not None:
            (root / masks).mkdir(exist_ok=True)
            mask = np.zeros(size, np.uint8)
            for k, (category_id, _) in enumerate(objs):
                mask[k, :] = COCO_CATEGORY_IDS.index(category_id) + 1
            mask[-1, :] = 255
            Image.fromarray(mask, mode="L").save(root / masks / f"{image_id:012d}.png")
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps({"images": images[::-1], "annotations": anns, "categories": categories}))
    return path


def expected_label(objs, include_crowd=True):
    label = np.zeros(80, np.float32)
    for category_id, crowd in objs:
        if include_crowd or not crowd:
            label[COCO_CATEGORY_IDS.index(category_id)] = 1
    return label


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    coco._MEMORY.clear()
    yield
    coco._MEMORY.clear()


def test_coco17_labels_follow_the_standard_category_order(tmp_path):
    write_coco(tmp_path, "val2017", "{id}.jpg", full_categories())
    ds = COCODataset(tmp_path, "val2017")
    assert ds.classes == COCO_CLASSES and ds.num_classes == 80
    assert ds.ids == ["000000000009", "000000000025", "000000000030"]  # sorted, unannotated image kept
    for image_id, objs in ANNOTATIONS.items():
        assert np.array_equal(ds.label(f"{image_id:012d}"), expected_label(objs))
    assert ds.label("000000000009")[COCO_CLASSES.index("toothbrush")] == 1  # category 90 -> last column
    assert ds.label("000000000030").sum() == 0
    assert ds.image_path("000000000025") == tmp_path / "val2017" / "000000000025.jpg"
    assert ds.load_image("000000000025").shape == (12, 16, 3)
    assert ds.mask_path("000000000009") is None and ds[0].mask is None and not ds.has_masks
    no_crowd = COCODataset(tmp_path, "val2017", include_crowd=False, cache=False)
    assert np.array_equal(no_crowd.label("000000000009"), expected_label(ANNOTATIONS[9], include_crowd=False))
    assert no_crowd.label("000000000009")[COCO_CLASSES.index("car")] == 0


def test_non_contiguous_category_ids_are_sorted(tmp_path):
    cats = [{"id": 90, "name": "z"}, {"id": 2, "name": "a"}, {"id": 13, "name": "m"}]
    write_coco(tmp_path, "val2017", "{id}.jpg", cats, annotations={7: [(13, 0)], 8: [(90, 0), (2, 0)]})
    ds = COCODataset(tmp_path, "val2017", cache=False)
    assert ds.classes == ("a", "m", "z")
    assert ds.label("000000000007").tolist() == [0, 1, 0]
    assert ds.label("000000000008").tolist() == [1, 0, 1]


def test_coco14_wsss_layout_with_masks_and_ids_file(tmp_path):
    write_coco(tmp_path, "train2014", "COCO_train2014_{id}.jpg", full_categories(), masks="coco_seg_anno")
    (tmp_path / "train2014.txt").write_text("000000000025\n000000000009\n")
    ds = COCODataset(tmp_path, "train2014", masks="coco_seg_anno", ids_file="{split}.txt")
    assert ds.ids == ["000000000025", "000000000009"]
    assert ds.image_path("000000000009").name == "COCO_train2014_000000000009.jpg"
    assert ds.has_masks
    sample = ds[1]
    assert sample.image.shape == (12, 16, 3) and sample.mask.shape == (12, 16)
    # the mask's classes are the label's (the crowd car included)
    present = set(np.unique(sample.mask)) - {0, 255}
    assert present == {c + 1 for c in np.flatnonzero(sample.label)}


def test_labels_are_cached_in_an_npz_and_refreshed_when_the_json_changes(tmp_path, monkeypatch):
    path = write_coco(tmp_path, "val2017", "{id}.jpg", full_categories())
    first = COCODataset(tmp_path, "val2017")
    cache = tmp_path / "annotations" / "instances_val2017.labels.npz"
    assert cache.is_file()
    assert not list((tmp_path / "annotations").glob("*.tmp"))  # atomic write left no temporary
    coco._MEMORY.clear()
    real_parse = coco.parse_instances
    monkeypatch.setattr(coco, "parse_instances", lambda *a, **k: pytest.fail("parsed although cached"))
    again = COCODataset(tmp_path, "val2017")
    assert again.ids == first.ids and again.classes == first.classes
    assert all(np.array_equal(again.label(i), first.label(i)) for i in first.ids)
    # a different JSON (new annotation) must not be served from the stale cache
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 99, "image_id": 30, "category_id": 44, "iscrowd": 0})
    path.write_text(json.dumps(data))
    coco._MEMORY.clear()
    monkeypatch.setattr(coco, "parse_instances", real_parse)
    updated = COCODataset(tmp_path, "val2017")
    assert updated.label("000000000030")[COCO_CLASSES.index("bottle")] == 1


def test_unwritable_cache_falls_back_to_memory(tmp_path, caplog):
    write_coco(tmp_path, "val2017", "{id}.jpg", full_categories())
    (tmp_path / "a_file").write_text("")
    with caplog.at_level(logging.WARNING):
        ds = COCODataset(tmp_path, "val2017", cache_dir=tmp_path / "a_file" / "cache")
    assert ds.label("000000000025")[COCO_CLASSES.index("giraffe")] == 1
    assert "cannot write the label cache" in caplog.text


def test_errors_name_the_missing_or_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        COCODataset(tmp_path / "nowhere", "val2017")
    write_coco(tmp_path, "val2017", "{id}.jpg", full_categories())
    with pytest.raises(FileNotFoundError, match="train2017: image folder of COCO split 'train2017'"):
        COCODataset(tmp_path, "train2017")
    (tmp_path / "train2017").mkdir()
    with pytest.raises(FileNotFoundError, match="instances_train2017.json: COCO instances JSON"):
        COCODataset(tmp_path, "train2017")
    with pytest.raises(FileNotFoundError, match="coco_seg_anno: mask folder"):
        COCODataset(tmp_path, "val2017", masks="coco_seg_anno")
    (tmp_path / "val2017.txt").write_text("000000000009\n000000000777\n")
    with pytest.raises(ValueError, match=r"1 ids are not images .*000000000777"):
        COCODataset(tmp_path, "val2017", ids_file="{split}.txt")
    with pytest.raises(KeyError, match="'000000000777' is not in COCO split 'val2017'"):
        COCODataset(tmp_path, "val2017").label("000000000777")
    bad = write_coco(tmp_path / "bad", "val2017", "{id}.jpg", [{"id": 1, "name": "person"}],
                     annotations={5: [(3, 0)]})
    with pytest.raises(ValueError, match=r"instances_val2017.json: annotation 1 has category_id 3"):
        COCODataset(tmp_path / "bad", "val2017", cache=False)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid COCO instances JSON"):
        COCODataset(tmp_path / "bad", "val2017", cache=False)


@pytest.mark.parametrize("name,split,file_name,masks", [
    ("coco17", "val2017", "{id}.jpg", None),
    ("coco14", "val2014", "COCO_val2014_{id}.jpg", "coco_seg_anno"),
])
def test_config_composes_and_builds_the_split(make_cfg, tmp_path, name, split, file_name, masks):
    root = tmp_path / name
    write_coco(root, split, file_name, full_categories(), masks=masks)
    every_image = ["dataset.args.ids_file=null"] if name == "coco14" else []   # no {split}.txt in this tree
    cfg = make_cfg(f"dataset={name}", f"dataset.args.root={root}", *every_image, tiny=False)
    assert cfg.dataset.name == name and cfg.dataset._target_ == "wsss.data.coco.COCODataset"
    ds = build_split(OmegaConf.to_container(cfg.dataset, resolve=True), split)
    assert isinstance(ds, COCODataset) and len(ds) == 3 and ds.has_masks == (masks is not None)
    assert np.array_equal(ds.label("000000000025"), expected_label(ANNOTATIONS[25]))
