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
