"""Masks of a VOC2012 + SBD tree resolve per image: SegmentationClassAug first, then SegmentationClass."""
import numpy as np

from tests.fixtures.voc_layout import ABSENT_FROM_VAL, DRAWN
from wsss.data.voc import VOC_CLASSES, VOCDataset


def test_each_image_takes_its_mask_from_the_first_folder_holding_it(voc_root):
    train_aug, val = VOCDataset(voc_root, "train_aug"), VOCDataset(voc_root, "val")
    assert {train_aug.mask_path(i).parent.name for i in train_aug.ids} == {"SegmentationClassAug"}
    # the Aug folder lacks the val images: theirs come from SegmentationClass, so val is evaluable
    assert {val.mask_path(i).parent.name for i in val.ids} == {"SegmentationClass"}
    assert val.has_masks and all(val.load_mask(i) is not None for i in val.ids)


def test_grey_and_palette_masks_decode_to_the_same_class_indices(voc_root):
    ds = VOCDataset(voc_root, "train")
    only_voc = VOCDataset(voc_root, "train", masks="SegmentationClass")
    for image_id in ds.ids:
        grey, palette = ds.load_mask(image_id), only_voc.load_mask(image_id)
        assert ds.mask_path(image_id).parent.name == "SegmentationClassAug"
        keep = palette != 255  # VOC's void border; the SBD-style grey mask has none
        assert 0.5 < keep.mean() < 1.0
        np.testing.assert_array_equal(grey[keep], palette[keep])
        assert set(np.unique(grey)) <= {0, *(VOC_CLASSES.index(c) + 1 for c in DRAWN)}


def test_fixture_layout_matches_the_real_download(voc_root):
    train, train_aug, val = (VOCDataset(voc_root, s) for s in ("train", "train_aug", "val"))
    assert set(train.ids) < set(train_aug.ids) and not set(train_aug.ids) & set(val.ids)
    shapes = {train_aug.load_image(i).shape[:2] for i in train_aug.ids}
    assert len(shapes) >= 3 and all(h != w for h, w in shapes)
    absent = VOC_CLASSES.index(ABSENT_FROM_VAL)
    assert not any(val.label(i)[absent] for i in val.ids) and any(train.label(i)[absent] for i in train.ids)
    # a mask found nowhere is named in the last folder searched
    assert VOCDataset(voc_root, "val").mask_path("2099_000000").parent.name == "SegmentationClass"
