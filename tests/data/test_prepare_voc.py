"""`python -m wsss.data.prepare voc12|voc07` on tiny archives in the official formats
(tests/fixtures/voc_archives.py).

The tiny archives are not the official ones, so the tests give their own md5 (`--voc-md5` ...): the checksum
code runs; `test_a_wrong_or_missing_archive_...` shows the official digests refusing them.
"""
import hashlib
import os

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.voc_archives import make_voc07_archives, make_voc12_archives
from wsss.artifacts import PALETTE
from wsss.data.prepare.__main__ import main as prepare_main
from wsss.data.prepare.voc12 import SBD, VOC
from wsss.data.voc import VOCDataset


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def archives(module_tmp):
    return make_voc12_archives(module_tmp("voc_archives"))


def voc12_args(archives, out, *extra):
    return ["voc12", "--voc", str(archives.voc), "--sbd", str(archives.sbd), "--out", str(out),
            "--voc-md5", md5(archives.voc), "--sbd-md5", md5(archives.sbd), *extra]


def snapshot(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and ".prepare" not in p.parts}


def test_voc12_gives_the_tree_the_loader_reads(archives, tmp_path, capsys):
    root = tmp_path / "VOC2012"
    assert prepare_main(voc12_args(archives, root)) == 0
    printed = capsys.readouterr().out
    # the rule, written out independently: VOC train, SBD train and SBD val ids, none of VOC val
    every = archives.voc_train + archives.voc_val + archives.sbd_train + archives.sbd_val
    expected_ids = sorted({i for i in every if i not in archives.voc_val and (
        i in archives.voc_train or i in archives.sbd_train or i in archives.sbd_val)})
    assert (root / "ImageSets/Segmentation/train_aug.txt").read_text().split() == expected_ids
    assert f"train_aug.txt: {len(expected_ids)} ids" in printed and f"dataset.args.root={root}" in printed
    for image_id in expected_ids:   # VOC's own mask where VOC has one (void kept), SBD's otherwise
        with Image.open(root / "SegmentationClassAug" / f"{image_id}.png") as im:
            assert im.mode == "P" and im.getpalette()[:60] == PALETTE[:60]
            mask = np.asarray(im)
        want = archives.voc_masks.get(image_id, archives.sbd_masks.get(image_id))
        assert np.array_equal(mask, want), image_id
    assert not any((root / "SegmentationClassAug" / f"{i}.png").exists() for i in archives.voc_val)
    only_in_sbd = archives.only_in_sbd
    assert (root / "JPEGImages" / f"{only_in_sbd}.jpg").read_bytes() == archives.sbd_images[only_in_sbd]
    train_aug = VOCDataset(root, "train_aug")   # the loader: labels, and the masks of masks=auto
    assert len(train_aug) == len(expected_ids)
    for image_id in expected_ids:
        assert train_aug.mask_path(image_id).parent.name == "SegmentationClassAug"
        assert train_aug.label(image_id).sum() >= 1
    val = VOCDataset(root, "val")
    assert all(val.mask_path(i).parent.name == "SegmentationClass" for i in val.ids)


def test_voc12_rerun_skips_what_is_done_and_redoes_only_unfinished_files(archives, tmp_path, capsys):
    root = tmp_path / "VOC2012"
    assert prepare_main(voc12_args(archives, root)) == 0
    before = snapshot(root)
    assert prepare_main(voc12_args(archives, root)) == 0
    assert "already extracted" in capsys.readouterr().out and snapshot(root) == before
    # a run killed part-way: one converted mask never renamed into place, one image cut short, markers gone
    sbd_only = next(i for i in archives.sbd_train if i not in archives.voc_train + archives.voc_val)
    lost_mask = root / "SegmentationClassAug" / f"{sbd_only}.png"
    lost_mask.rename(lost_mask.with_name(f".{lost_mask.name}.x1y2.tmp"))
    cut = root / "JPEGImages" / f"{archives.voc_train[1]}.jpg"
    full = cut.read_bytes()
    cut.write_bytes(full[: len(full) // 2])
    for marker in (root / ".prepare").glob("*.done"):
        marker.unlink()
    before = snapshot(root)
    assert prepare_main(voc12_args(archives, root)) == 0
    after = snapshot(root)
    changed = {p for p in after if before.get(p) != after[p]}
    assert changed == {lost_mask, cut}   # train_aug.txt too is left alone: its content is the same
    assert cut.read_bytes() == full and not list(root.rglob(".*.tmp"))
    assert np.array_equal(np.asarray(Image.open(lost_mask)), archives.sbd_masks[sbd_only])
    lost_mask.unlink()   # deleted after a finished run: its marker does not hide it
    assert prepare_main(voc12_args(archives, root)) == 0 and lost_mask.is_file()


def test_a_wrong_or_missing_archive_is_refused_with_what_to_do(archives, tmp_path, capsys):
    root = tmp_path / "VOC2012"
    official = ["voc12", "--voc", str(archives.voc), "--sbd", str(archives.sbd), "--out", str(root)]
    assert prepare_main(official) == 2
    err = capsys.readouterr().err
    for archive, path in ((VOC, archives.voc), (SBD, archives.sbd)):   # both digests, the file, the way out
        assert f"{path}: md5 {md5(path)} but {archive.filename} has md5 {archive.md5}" in err
    assert "--no-verify" in err and "Traceback" not in err
    assert not (root / "JPEGImages").exists()
    assert prepare_main(["voc12", "--voc", str(tmp_path / "absent.tar"), "--out", str(root)]) == 2
    err = capsys.readouterr().err
    assert VOC.url in err and VOC.md5 in err and SBD.url in err and SBD.md5 in err and "Traceback" not in err
    assert prepare_main(["voc12", "--voc", str(archives.voc), "--sbd", str(archives.sbd), "--out", str(root),
                         "--no-verify"]) == 0


def test_voc07_extracts_both_tars_into_the_classification_layout(tmp_path, capsys):
    trainval, test, splits = make_voc07_archives(tmp_path / "archives")
    root = tmp_path / "VOC2007"
    args = ["voc07", "--trainval", str(trainval), "--test", str(test), "--out", str(root)]
    assert prepare_main(args) == 2 and "c52e279531787c972589f7e41ab4ae64" in capsys.readouterr().err
    assert prepare_main([*args, "--trainval-md5", md5(trainval), "--test-md5", md5(test)]) == 0
    for split, ids in splits.items():
        ds = VOCDataset(root, split, masks="none")
        assert ds.ids == ids and all(ds.image_path(i).is_file() and ds.label(i).sum() >= 1 for i in ids)
    assert f"test {len(splits['test'])} ids" in capsys.readouterr().out
    os.utime(trainval)   # same file, new mtime: checked again, every member found in place
    assert prepare_main([*args, "--no-verify"]) == 0 and "0 files extracted" in capsys.readouterr().out


def test_masks_from_sbd_gives_sbds_annotation_where_both_annotate_and_is_not_mixed_in(archives, tmp_path, capsys):
    root = tmp_path / "VOC2012"
    assert prepare_main(voc12_args(archives, root, "--masks-from", "sbd")) == 0
    sbd = set(archives.sbd_train + archives.sbd_val)
    for image_id in (root / "ImageSets/Segmentation/train_aug.txt").read_text().split():
        want = archives.sbd_masks[image_id] if image_id in sbd else archives.voc_masks[image_id]
        assert np.array_equal(np.asarray(Image.open(root / "SegmentationClassAug" / f"{image_id}.png")), want)
    assert any(i in sbd for i in archives.voc_train)   # the fixture has images both annotate
    assert prepare_main(voc12_args(archives, root)) == 2
    assert "made with --masks-from sbd" in capsys.readouterr().err


def test_a_bad_sbd_mat_names_the_member(tmp_path):
    from scipy.io import savemat

    from wsss.data.prepare.archives import PrepareError
    from wsss.data.prepare.voc12 import sbd_segmentation

    for content, expected in (({"GTinst": {"Segmentation": np.zeros((2, 2), np.uint8)}}, "struct GTcls"),
                              ({"GTcls": {"Segmentation": np.full((2, 2), 21, np.uint8)}}, "0..20")):
        savemat(tmp_path / "x.mat", content)
        with pytest.raises(PrepareError, match=expected) as e:
            sbd_segmentation((tmp_path / "x.mat").read_bytes(), "benchmark.tgz:cls/x.mat")
        assert "benchmark.tgz:cls/x.mat" in str(e.value)
