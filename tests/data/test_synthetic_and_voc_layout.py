"""Synthetic generation and VOC-layout parsing on tiny trees written in the real format."""
import numpy as np
import pytest
from PIL import Image

from wsss.artifacts import PALETTE
from wsss.data.synthetic import SyntheticSpec, write_synthetic
from wsss.data.voc import VOCDataset, labels_from_mask


def test_synthetic_is_deterministic_and_consistent(tmp_path):
    spec = SyntheticSpec(num_classes=4, image_size=48, splits={"train": 6, "val": 3}, seed=3)
    a = write_synthetic(spec, tmp_path / "a")
    b = write_synthetic(spec, tmp_path / "b")
    other = write_synthetic(SyntheticSpec(num_classes=4, image_size=48, splits={"train": 6, "val": 3}, seed=4),
                            tmp_path / "a")
    ds_a, ds_b = VOCDataset(a, "train", spec.classes), VOCDataset(b, "train", spec.classes)
    assert ds_a.ids == ds_b.ids and len(ds_a) == 6 and len(VOCDataset(a, "val", spec.classes)) == 3
    for i in ds_a.ids:
        assert np.array_equal(ds_a.load_image(i), ds_b.load_image(i))
        mask = ds_a.load_mask(i)
        assert mask.shape == (48, 48) and set(np.unique(mask)) <= {0, 1, 2, 3, 4, 255}
        # labels parsed from the XML are exactly the classes painted in the mask
        assert np.array_equal(ds_a.label(i), labels_from_mask(mask, 4))
        assert ds_a.label(i).sum() >= 1
    assert not np.array_equal(VOCDataset(other, "train", spec.classes).load_image(ds_a.ids[0]),
                              ds_a.load_image(ds_a.ids[0]))


def test_synthetic_cooccurrence_pairs_classes(tmp_path):
    spec = SyntheticSpec(num_classes=5, image_size=48, splits={"train": 80}, objects=(2, 2), cooccurrence=1.0,
                         ignore_border=0)
    ds = VOCDataset(write_synthetic(spec, tmp_path), "train", spec.classes)
    pairs = 0
    for i in ds.ids:
        present = set(np.nonzero(ds.label(i))[0])
        pairs += any((c + 1) % 5 in present for c in present)
    assert pairs / len(ds) > 0.8  # the partner class shows up unless fully covered by the first object


def write_voc_tree(root, aug=False):
    """A 3-image VOC2012 tree: JPEGs, palette PNG masks, XML (a difficult object, a zero-area box)."""
    for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    objects = {"2007_000001": [("cat", 0, (1, 1, 10, 10)), ("dog", 1, (2, 2, 8, 8))],
               "2007_000002": [("person", 0, (1, 1, 10, 10)), ("car", 0, (5, 5, 5, 9))],  # car: zero-width box
               "2007_000003": [("aeroplane", 0, (1, 1, 12, 12))]}
    classes = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
    for image_id, objs in objects.items():
        Image.fromarray(rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg")
        mask = np.zeros((16, 20), np.uint8)
        for name, _, (x0, y0, x1, y1) in objs:
            if x1 > x0 and y1 > y0:
                mask[y0:y1, x0:x1] = classes.index(name) + 1
        mask[0, :] = 255
        m = Image.fromarray(mask, mode="P")
        m.putpalette(PALETTE)
        m.save(root / "SegmentationClass" / f"{image_id}.png")
        xml = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}"
                      f"</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, d, b in objs)
        (root / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{xml}</annotation>")
    (root / "ImageSets/Segmentation/train.txt").write_text("2007_000001\n2007_000002\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("2007_000003\n")
    (root / "ImageSets/Main/trainval.txt").write_text("2007_000001\n2007_000002\n2007_000003\n")
    if aug:
        (root / "SegmentationClassAug").mkdir()
        Image.fromarray(np.full((16, 20), 7, np.uint8)).save(root / "SegmentationClassAug" / "2007_000001.png")
    return classes


def test_voc_parsing(tmp_path):
    classes = write_voc_tree(tmp_path)
    train = VOCDataset(tmp_path, "train")
    assert train.ids == ["2007_000001", "2007_000002"] and train.num_classes == 20
    lab = train.label("2007_000001")
    assert set(np.nonzero(lab)[0]) == {classes.index("cat"), classes.index("dog")}  # difficult objects count
    assert set(np.nonzero(train.label("2007_000002"))[0]) == {classes.index("person")}  # zero-area box dropped
    assert train.load_image("2007_000001").shape == (16, 20, 3)
    mask = train.load_mask("2007_000001")
    assert mask[0, 0] == 255 and mask[9, 9] == classes.index("cat") + 1 and mask[5, 5] == classes.index("dog") + 1
    assert VOCDataset(tmp_path, "trainval").ids[-1] == "2007_000003"  # ImageSets/Main (VOC2007 style)


def test_voc_labels_fall_back_to_masks_and_aug_masks_win(tmp_path):
    write_voc_tree(tmp_path, aug=True)
    (tmp_path / "Annotations" / "2007_000001.xml").unlink()
    ds = VOCDataset(tmp_path, "train")
    assert ds.mask_path("2007_000001").parent.name == "SegmentationClassAug"
    assert set(np.nonzero(ds.label("2007_000001"))[0]) == {6}  # from the Aug mask, class index 7 - 1


def test_voc_errors_name_the_file(tmp_path):
    write_voc_tree(tmp_path)
    with pytest.raises(FileNotFoundError, match="train_aug"):
        VOCDataset(tmp_path, "train_aug")
    (tmp_path / "JPEGImages" / "2007_000002.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(OSError, match="2007_000002"):
        VOCDataset(tmp_path, "train").load_image("2007_000002")
