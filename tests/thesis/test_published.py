"""The published-values file: complete and consistent with the thesis's own arithmetic; the XAI tables' match."""
import statistics

import pytest

from wsss.thesis import published, value

CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def test_every_table_is_there():
    tables = {t for t, _, _ in published()}
    assert tables == set(range(2, 12))
    assert value(2, "P-NOC+LS+C2AM-H", "test") == 72.7
    assert value(7, "RS269 P-NOC+LS", "TTA") == 62.7
    assert value(11, "P-NOC", "bicycle") == 35.2


def test_table7_max_is_the_max_of_the_epochs():
    rows = {r for t, r, _ in published() if t == 7}
    assert len(rows) == 10
    for row in rows:
        assert value(7, row, "Max") == max(value(7, row, f"E{i}") for i in range(1, 16)), row


@pytest.mark.parametrize("table,rows,column_of", [
    (8, ["RA", "P", "Pf", "P-OC", "P-OC+LS", "P-NOC+LS"], lambda row: ("overall", row)),
    (11, ["AffinityNet", "OC-CSE", "AMN", "ViT-PCM", "MCTformer", "P-OC", "P-NOC"], lambda row: (row, "mIoU")),
])
def test_per_class_tables_average_to_their_miou(table, rows, column_of):
    for row in rows:
        if table == 8:
            per_class = [value(8, c, row) for c in CLASSES]
        else:
            per_class = [value(11, row, c) for c in CLASSES]
        assert statistics.mean(per_class) == pytest.approx(value(table, *column_of(row)), abs=0.1), row


# -- the XAI tables (3, 4, 6) beside the xai stage, Table 5 beside its classifiers --------------------------------
def xai_classifier_cfg(dataset="voc07", backbone="resnet101", train_split="train", val_split="test", kur=False,
                       alpha=1.0):
    """The resolved config of an `xai_*` recipe's classifier run."""
    return {"dataset": {"name": dataset, "train_split": train_split, "val_split": val_split, "num_classes": 20,
                        "crop_size": 512},
            "backbone": {"name": backbone, "output_stride": None}, "run_name": "xai",
            "stage": {"name": "classifier", "head": {"bias": True}, "kur": {"enabled": kur, "alpha": alpha}}}


def xai_run_cfg(dataset="voc07", backbone="resnet101", **stage):
    return {"dataset": {"name": dataset}, "backbone": {"name": backbone},
            "stage": {"name": "xai", "label_source": "detected", "max_images": None, **stage}}


def test_xai_runs_of_the_thesis_get_tables_3_4_and_6():
    from wsss.thesis import xai_source, xai_values

    trained = xai_classifier_cfg()
    assert xai_source(xai_run_cfg(), trained, False, 1.0, "val") == (4, "VOC07")
    assert xai_source(xai_run_cfg(image_size=512), trained, False, 1.0, "val") == (4, "VOC07")
    assert xai_source(xai_run_cfg(), trained, True, 1.0, "val") == (6, "VOC07")
    assert xai_source(xai_run_cfg(backbone="vgg16"), xai_classifier_cfg(backbone="vgg16"), False, 1.0, "val") \
        == (3, "VGG16")
    assert xai_source(xai_run_cfg("planet"), xai_classifier_cfg("planet"), False, 1.0, "val") == (4, "P:UAS")
    got = xai_values((4, "VOC07"), ["cam", "gradcam", "d_minmax_cam"])
    assert got["cam"]["ic"] == 27.68 and got["cam"]["ad"] == 25.24  # Table 4 = Table 3's RN101 column
    assert got["d_minmax_cam"]["ic"] == 23.83 and len(got["d_minmax_cam"]) == 7
    assert "gradcam" not in got  # the thesis reports Grad-CAM++, not Grad-CAM
    assert xai_values((3, "Eb6"), ["cam"])["cam"]["ic"] == 39.67
    assert xai_values((6, "COCO17"), ["minmax_cam"])["minmax_cam"]["ic"] == 21.47


@pytest.mark.parametrize("why,run,trained,kur,alpha,split", [
    ("another split", {}, {}, False, 1.0, "test"),
    ("ground-truth labels (the text's definition, not the code's)", {"label_source": "labels"}, {}, False, 1.0, "val"),
    ("a subset of the split", {"max_images": 10}, {}, False, 1.0, "val"),
    ("another detection threshold", {"threshold": 0.35}, {}, False, 1.0, "val"),
    ("another input size than the classifier's", {"image_size": 448}, {}, False, 1.0, "val"),
    ("KUR-α (the thesis's tables use α = 1)", {}, {}, True, 20.0, "val"),
    ("a classifier that trained on the explained split", {}, {"train_split": "trainval"}, False, 1.0, "val"),
    ("a classifier without the dense bias", {}, {"bias": False}, False, 1.0, "val"),
    ("a stride-16 classifier", {}, {"output_stride": 16}, False, 1.0, "val"),
    ("a WSSS stage's network", {}, {"stage": "puzzle"}, False, 1.0, "val"),
])
def test_no_xai_table_for_other_runs(why, run, trained, kur, alpha, split):
    from wsss.thesis import xai_source

    cfg = xai_classifier_cfg(train_split=trained.get("train_split", "train"))
    cfg["stage"]["head"]["bias"] = trained.get("bias", True)
    cfg["stage"]["name"] = trained.get("stage", "classifier")
    cfg["backbone"]["output_stride"] = trained.get("output_stride")
    assert xai_source(xai_run_cfg(**run), cfg, kur, alpha, split) is None, why


def test_no_table_3_row_for_another_architecture_or_data_set():
    from wsss.thesis import xai_source

    assert xai_source(xai_run_cfg(backbone="resnet50"), xai_classifier_cfg(backbone="resnet50"), False, 1, "val") is None
    assert xai_source(xai_run_cfg("coco17", "vgg16"), xai_classifier_cfg("coco17", "vgg16", "train2017"),
                      False, 1.0, "val2017") is None  # Table 3 is VOC07 only
    assert xai_source(xai_run_cfg(backbone="vgg16"), xai_classifier_cfg(backbone="vgg16"), True, 1.0, "val") is None
