"""Bad data on a VOC-layout tree fails in the scan (or when the split is read), naming the file: never later in
a training loop, and never as a silently wrong count."""
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from tests.fixtures.voc_layout import VOC_TINY, make_voc_tree
from tests.helpers import compose_config
from wsss.data.datamodule import WSSSDataModule
from wsss.data.scan import DataScanError, scan
from wsss.data.voc import VOCDataset, read_split


@pytest.fixture
def voc(tmp_path):
    """(plain config of a classifier on a fresh tiny VOC tree, its root)."""
    root = make_voc_tree(tmp_path / "VOC2012", train=4, sbd_extra=2, val=3)
    cfg = compose_config(tmp_path / "run", tmp_path, [*VOC_TINY, f"dataset.args.root={root}",
                                                      "dataset.train_split=train_aug", "dataset.val_split=val"],
                         tiny=False)
    return OmegaConf.to_container(cfg, resolve=True), root


def check(plain, tasks, cache=None):
    return scan(WSSSDataModule(plain["dataset"], 2, (0,) * 3, (1,) * 3), plain, tasks, cache)


def split_file(root: Path, name: str) -> Path:
    return root / "ImageSets" / "Segmentation" / f"{name}.txt"


# -- split files ------------------------------------------------------------------------------------
def test_an_id_listed_twice_is_refused_naming_the_file_and_lines(voc):
    _, root = voc
    path = split_file(root, "val")
    ids = path.read_text().split()
    path.write_text("\n".join([ids[0], ids[1], ids[0], "", ids[0], ids[2]]) + "\n")
    with pytest.raises(ValueError) as e:
        VOCDataset(root, "val")
    msg = str(e.value)
    assert msg.startswith(f"{path}: 2 bad image id(s)")
    assert f"line 3: id {ids[0]!r} is listed again (first at line 1)" in msg
    assert f"line 5: id {ids[0]!r} is listed again (first at line 1)" in msg


@pytest.mark.parametrize("bad", ["../../x", "/tmp/x", "sub/x", "sub\\x", "..x"])
def test_a_path_like_id_is_refused(voc, bad):
    _, root = voc
    path = split_file(root, "val")
    path.write_text(path.read_text() + f"{bad}\n")
    with pytest.raises(ValueError, match=rf"{path}: 1 bad image id\(s\).*\n  line 4: id {bad!r} looks like a path"
                                         .replace("\\\\", "\\\\\\\\")):
        read_split(path)


def test_the_deeplab_image_mask_list_format_gives_the_ids(tmp_path):
    path = tmp_path / "train_aug.txt"
    path.write_text("/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n2008_000002\n")
    assert read_split(path) == ["2007_000032", "2008_000002"]


def test_the_scan_refuses_duplicates_of_any_loader(voc):
    """Loaders that list ids themselves (COCO, Planet, DeepGlobe) are checked by the scan."""
    plain, _ = voc
    dm = WSSSDataModule(plain["dataset"], 2, (0,) * 3, (1,) * 3)
    dm.split("val").ids.append(dm.split("val").ids[1])
    with pytest.raises(DataScanError, match=r"split 'val' entry 4: id '2007_000\d+' is listed again \(first at entry 2"):
        scan(dm, plain, ["predict"], None)


# -- what each split's loaders read -----------------------------------------------------------------
def test_an_unknown_class_in_a_val_annotation_fails_the_scan(voc):
    plain, root = voc
    val_id = split_file(root, "val").read_text().split()[1]
    xml = root / "Annotations" / f"{val_id}.xml"
    xml.write_text(xml.read_text().replace("<name>", "<name>zebra", 1))
    with pytest.raises(DataScanError, match=rf"split 'val'.*\n  {xml}: object class 'zebra\w+' is not one of"):
        check(plain, ["fit"])  # validation reads the val labels: the scan fails, not the first validation


def test_a_malformed_annotation_names_its_file(voc):
    plain, root = voc
    xml = root / "Annotations" / f"{split_file(root, 'train').read_text().split()[0]}.xml"
    xml.write_text("<annotation><object>")
    with pytest.raises(DataScanError, match=rf"{xml}: malformed XML annotation"):
        check(plain, ["fit"])


def test_an_rgb_mask_of_a_train_image_fails_the_scan_of_fit(voc):
    plain, root = voc
    train_id = split_file(root, "train").read_text().split()[2]
    mask = root / "SegmentationClassAug" / f"{train_id}.png"
    Image.open(mask).convert("RGB").save(mask)
    with pytest.raises(DataScanError, match=rf"split 'train_aug'.*\n  {mask}: mask must be a palette or grey PNG"):
        check(plain, ["fit"])  # the training loader reads the masks that exist


def test_masks_found_per_folder_are_reported(voc, caplog):
    plain, _ = voc
    with caplog.at_level(logging.INFO, logger="wsss.data.scan"):
        check(plain, ["fit", "predict", "evaluate"])
    lines = [r.getMessage() for r in caplog.records]
    assert "scanned voc12/train_aug: 6 images ok; 6 masks (SegmentationClassAug 6)" in lines
    assert "scanned voc12/val: 3 images ok; 3 masks (SegmentationClass 3)" in lines


def test_the_cache_notices_an_annotation_edit(voc, tmp_path):
    plain, root = voc
    cache = tmp_path / "scan"
    check(plain, ["fit"], cache)
    val_id = split_file(root, "val").read_text().split()[0]
    xml = root / "Annotations" / f"{val_id}.xml"
    before = xml.stat()
    xml.write_text(xml.read_text().replace("<name>", "<name>zebra", 1))
    os.utime(xml, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))  # a coarse clock still sees a change
    with pytest.raises(DataScanError, match=rf"{xml}: object class 'zebra"):
        check(plain, ["fit"], cache)


def test_a_sixteen_bit_image_is_read_by_value(voc):
    plain, root = voc
    val_id = split_file(root, "val").read_text().split()[0]
    (root / "JPEGImages" / f"{val_id}.jpg").unlink()
    h, w = np.asarray(Image.open(root / "SegmentationClass" / f"{val_id}.png")).shape
    Image.fromarray(np.full((h, w), 257 * 40, np.uint16)).save(root / "JPEGImages" / f"{val_id}.png")
    check(plain, ["predict"])  # accepted by the scan
    assert (VOCDataset(root, "val").load_image(val_id) == 40).all()


def test_each_task_scans_what_its_loaders_read(voc, tmp_path):
    from wsss.data.scan import Needs, requirements

    plain, root = voc
    sample = Needs(labels=True, masks=True)
    assert requirements(plain, ["fit"]) == {"train_aug": Needs(labels=True, label_set=True, masks=True), "val": sample}
    assert requirements(plain, ["predict"]) == {"train_aug": sample, "val": sample}  # voc12 predicts train_aug
    assert requirements(plain, ["evaluate"])["val"] == Needs(labels=True, masks=True, all_masks=True)
    xai = compose_config(tmp_path / "run", tmp_path, [*VOC_TINY, f"dataset.args.root={root}", "stage=xai"], tiny=False)
    assert requirements(OmegaConf.to_container(xai, resolve=True), ["explain"]) == {"val": sample}  # val_split
    deeplab = OmegaConf.to_container(compose_config(tmp_path / "run", tmp_path, [
        *VOC_TINY, f"dataset.args.root={root}", "stage=deeplab", "stage.masks=gt"], tiny=False), resolve=True)
    assert requirements(deeplab, ["fit", "predict"]) == {  # trains on GT masks, predicts from images alone
        "train_aug": Needs(labels=True, masks=True, all_masks=True), "val": sample}  # voc12 predicts train_aug, val


def test_the_fingerprint_covers_a_shared_label_file(tmp_path):
    """Planet, HPA and COCO keep every label in one CSV / JSON: editing it must re-run the scan."""
    from tests.data.test_planet import write_planet
    from wsss.data.planet import PlanetDataset
    from wsss.data.scan import Needs, fingerprint

    root = write_planet(tmp_path / "planet")
    needs = Needs(labels=True, label_set=True)
    before = fingerprint(PlanetDataset(root, "all", fractions={"all": 1.0}), needs)
    csv = root / "train_v2.csv"
    stat = csv.stat()
    csv.write_text(csv.read_text().replace("haze primary", "haze"))
    os.utime(csv, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert fingerprint(PlanetDataset(root, "all", fractions={"all": 1.0}), needs) != before
