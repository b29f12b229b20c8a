"""The published-values file: complete, consistent with the thesis's own arithmetic, and matched to runs."""
import statistics

import pytest

from wsss.thesis import CAM_ROWS, beside_cam_miou, published, value

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


def test_thesis_column_only_for_the_matching_recipe_and_data_set():
    cfg = {"dataset": {"name": "voc12"}, "backbone": {"name": "resnest269"}, "stage": {"name": "pnoc"},
           "run_name": "rs269_pnoc_ls"}
    got = beside_cam_miou(cfg, "train", "cams/train", 0.60)
    assert got["cams/train/thesis_miou"] == pytest.approx(0.627)
    assert got["cams/train/thesis_diff"] == pytest.approx(0.60 - 0.627)
    assert beside_cam_miou(cfg, "val", "cams/val", 0.6) == {}
    assert beside_cam_miou({**cfg, "dataset": {"name": "synthetic"}}, "train", "x", 0.6) == {}
    assert beside_cam_miou({**cfg, "run_name": "mine"}, "train", "x", 0.6) == {}
    assert all(value(7, row, "TTA") is not None for row in CAM_ROWS.values())


def test_affinity_and_deeplab_runs_of_the_thesis_get_tables_10_and_2(tmp_path):
    """Table 10 (pseudo masks) beside the voc12_affinity_rs269 run on P-NOC CAMs + saliency; Table 2 beside a
    voc12_deeplab_rs269 run trained on that run's masks; nothing for other inputs or data sets."""
    import yaml

    from wsss.thesis import beside, pseudo_mask_row, segmentation_row

    aff = {"dataset": {"name": "voc12"}, "backbone": {"name": "resnest269"}, "run_name": "default",
           "stage": {"name": "affinity", "inputs": {"cams": "c", "saliency": "s",
                                                   "producers": {"cams": "pnoc", "saliency": "saliency"}}}}
    assert pseudo_mask_row(aff) == "P-OC+LS+C2AM-H+NOC"
    assert value(10, pseudo_mask_row(aff), "val") == 73.37
    assert pseudo_mask_row({**aff, "stage": {**aff["stage"], "inputs": {"cams": "c", "producers": {"cams": "classifier"}}}}) is None
    assert pseudo_mask_row({**aff, "dataset": {"name": "coco14"}}) is None
    got = beside("pseudo_masks/val", 0.70, 73.37)
    assert got == {"pseudo_masks/val/thesis_miou": pytest.approx(0.7337), "pseudo_masks/val/thesis_diff": pytest.approx(-0.0337)}
    assert beside("x", 0.7, None) == {}

    run = tmp_path / "affinity" / "voc12" / "resnest269" / "default"
    run.mkdir(parents=True)
    dl = {"dataset": {"name": "voc12"}, "backbone": {"name": "resnest269"}, "run_name": "default",
          "stage": {"name": "deeplab", "masks": str(run / "pseudo_masks")}}
    assert segmentation_row(dl) is None  # the masks' producer is unknown
    (run / "config.yaml").write_text(yaml.safe_dump(aff))
    assert segmentation_row(dl) == "P-NOC+LS+C2AM-H" and value(2, "P-NOC+LS+C2AM-H", "val") == 71.5
    (run / "config.yaml").write_text(yaml.safe_dump({**aff, "stage": {**aff["stage"], "inputs": {}}}))
    assert segmentation_row(dl) is None


def test_saliency_runs_of_the_thesis_get_table_9(tmp_path):
    """C²AM-H RS269 with P-NOC hints (column P) and the PoolNet trained on its pseudo saliency (column R)."""
    import yaml

    from wsss.thesis import beside_saliency, saliency_row

    ccam = {"dataset": {"name": "voc12"}, "backbone": {"name": "resnest269"}, "run_name": "default",
            "stage": {"name": "ccam", "hints": {"enabled": True}, "inputs_producer": "stage=pnoc",
                      "evaluation": {"cams": "runs/pnoc/voc12/resnest269/default/cams"}}}
    got = beside_saliency(ccam, "train", "saliency/train/", 0.70, 0.66)
    assert got["saliency/train/class/thesis_miou"] == pytest.approx(0.702)  # cams=GT, P
    assert got["saliency/train/cam/thesis_diff"] == pytest.approx(0.66 - 0.672)  # cams=RS269 P-NOC+LS, P
    assert beside_saliency(ccam, "val", "x/", 0.7, 0.6) == {}
    assert saliency_row({**ccam, "stage": {**ccam["stage"], "hints": {"enabled": False}}}) is None

    run = tmp_path / "ccam" / "voc12" / "resnest269" / "default"
    run.mkdir(parents=True)
    poolnet = {"dataset": {"name": "voc12"}, "backbone": {"name": "resnet50"}, "run_name": "default",
               "stage": {"name": "saliency", "inputs": {"pseudo_saliency": str(run / "pseudo_saliency")}}}
    assert saliency_row(poolnet) is None
    (run / "config.yaml").write_text(yaml.safe_dump(ccam))
    assert saliency_row(poolnet) == ("C2AM-H RS269 hints=RS269 P-NOC+LS", "R")
    assert beside_saliency(poolnet, "train", "s/", 0.7, None) == {"s/class/thesis_miou": pytest.approx(0.713),
                                                                  "s/class/thesis_diff": pytest.approx(0.7 - 0.713)}


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


def test_xai_classifiers_get_table_5():
    from wsss.thesis import beside_classification

    got = beside_classification(xai_classifier_cfg(), {"val/f1": 0.80})
    assert got["val/thesis_f1"] == pytest.approx(0.8426)
    assert got["val/thesis_f1_diff"] == pytest.approx(0.80 - 0.8426)
    kur = beside_classification(xai_classifier_cfg(kur=True), {"val/f1": 0.80})
    assert kur["val/thesis_f1"] == pytest.approx(0.8585)
    planet = beside_classification(xai_classifier_cfg("planet", val_split="val"), {"val/f1": 0.5, "val/f2": 0.9})
    assert planet == {"val/thesis_f2": pytest.approx(0.878), "val/thesis_f2_diff": pytest.approx(0.9 - 0.878)}
    assert beside_classification(xai_classifier_cfg(kur=True, alpha="num_classes"), {"val/f1": 0.8}) == {}
    assert beside_classification(xai_classifier_cfg(backbone="vgg16"), {"val/f1": 0.8}) == {}
    assert beside_classification(xai_classifier_cfg("voc12", train_split="train_aug", val_split="train"),
                                 {"val/f1": 0.8}) == {}  # Table 5 is on VOC12 val
    assert beside_classification(xai_classifier_cfg(train_split="trainval"), {"val/f1": 0.8}) == {}
