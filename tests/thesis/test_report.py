"""The thesis report's match of a run to its row (the recipe it ran, the producers its manifests record) and
its list of departures from the recipe, on run folders written by hand."""
import json

import pytest
import yaml

from wsss.thesis.deviations import departures
from wsss.thesis.report import lookup, ours
from wsss.thesis.rows import Matcher
from wsss.thesis.runs import read_run


def run_folder(root, name: str, stage: str, recipe: str | None, inputs: dict | None = None, **stage_keys):
    """A finished run folder: run.json (its command line), config.yaml, one artifact manifest recording the
    input folders it read (`inputs`: kind -> run folder)."""
    folder = root / name
    folder.mkdir(parents=True)
    overrides = [f"stage={stage}", *([f"experiment={recipe}"] if recipe else [])]
    (folder / "run.json").write_text(json.dumps({"overrides": overrides}))
    config = {"stage": {"name": stage, **stage_keys}, "dataset": {"name": "voc12", "num_classes": 20},
              "backbone": {"name": "resnet18"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "metrics.json").write_text("{}")
    read = {str(f / kind): "digest" for kind, f in (inputs or {}).items()}
    (folder / "out" / "val").mkdir(parents=True)
    (folder / "out" / "val" / "manifest.json").write_text(json.dumps({"producer": {"inputs": read}}))
    return folder


def chain(root, cams_recipe="voc12_rs269_pnoc_ls", cams_stage="pnoc", saliency=True):
    cams = run_folder(root, "cams", cams_stage, cams_recipe)
    ccam = run_folder(root, "ccam", "ccam", "voc12_ccamh_rs269", {"cams": cams},
                      evaluation={"cams": str(cams / "cams")})
    poolnet = run_folder(root, "poolnet", "saliency", "voc12_poolnet_rn50", {"pseudo_saliency": ccam},
                         evaluation={"cams": str(cams / "cams")})
    affinity = run_folder(root, "affinity", "affinity", "voc12_affinity_rs269",
                          {"cams": cams, **({"saliency": poolnet} if saliency else {})})
    deeplab = run_folder(root, "deeplab", "deeplab", "voc12_deeplab_rs269", {"pseudo_masks": affinity})
    return {"cams": cams, "ccam": ccam, "poolnet": poolnet, "affinity": affinity, "deeplab": deeplab}


def rows_of(folder) -> list[tuple[int, str]]:
    return [r for r in Matcher().match(read_run(folder)).rows if r[0] != 8]


def test_the_p_noc_chain_gets_its_rows_of_tables_7_9_10_and_2(tmp_path):
    runs = chain(tmp_path)
    assert rows_of(runs["cams"]) == [(7, "RS269 P-NOC+LS")]
    assert rows_of(runs["ccam"]) == [(9, "C2AM-H RS269 hints=RS269 P-NOC+LS cams=GT"),
                                     (9, "C2AM-H RS269 hints=RS269 P-NOC+LS cams=RS269 P-NOC+LS")]
    assert [c.column for c in Matcher().match(read_run(runs["poolnet"])).cells] == ["R", "R"]
    assert rows_of(runs["affinity"]) == [(10, "P-OC+LS+C2AM-H+NOC")]
    assert rows_of(runs["deeplab"]) == [(2, "P-NOC+LS+C2AM-H")]


def test_the_rows_follow_the_producers_not_the_recipe_alone(tmp_path):
    poc = chain(tmp_path / "poc", "voc12_rs269_poc", "poc")
    assert rows_of(poc["affinity"]) == [(10, "P-OC+C2AM-H")]
    assert rows_of(poc["deeplab"]) == [(2, "P-OC+C2AM-H")]
    plain = chain(tmp_path / "no_saliency", saliency=False)
    assert rows_of(plain["affinity"]) == [(10, "P-OC+LS+NOC")]
    assert rows_of(plain["deeplab"]) == []   # Table 2 has no chain without the saliency
    other = chain(tmp_path / "synthetic", "synthetic", "pnoc")   # CAMs of no thesis recipe: no row downstream
    for step in ("cams", "ccam", "poolnet", "affinity", "deeplab"):
        assert rows_of(other[step]) == [], step
    assert "hints" in Matcher().match(read_run(other["ccam"])).why_not


def test_departures_name_each_changed_setting_and_a_replaced_group_once():
    recipe = {"backbone": {"name": "resnest269", "pretrained": True},
              "dataset": {"name": "voc12", "crop_size": 512},
              "stage": {"max_epochs": 15, "oc_checkpoint": None, "inputs": {"cams": None},
                        "predict_splits": None, "inference": {"crf": {"iterations": 1}}},
              "trainer": {"precision": "16-mixed", "accelerator": "gpu"}, "paths": {"runs_dir": "runs"},
              "num_workers": 8}
    ours = {"backbone": {"name": "resnet18", "pretrained": False},
            "dataset": {"name": "voc12", "crop_size": 64},
            "stage": {"max_epochs": 1, "oc_checkpoint": "/r/classifier/last.ckpt",
                      "inputs": {"cams": "/r/pnoc/cams"},
                      "predict_splits": ["val"], "inference": {"crf": None}},
            "trainer": {"precision": "32-true", "accelerator": "cpu"}, "paths": {"runs_dir": "/tmp"},
            "num_workers": 0}
    assert departures(ours, recipe) == [
        "backbone=resnet18 (recipe: resnest269)", "dataset.crop_size: 512 → 64", "stage.max_epochs: 15 → 1",
        "stage.inference.crf: {'iterations': 1} → None", "trainer.precision: 16-mixed → 32-true"]
    assert departures(recipe, recipe) == []


def test_our_value_is_found_inside_nested_metrics():
    metrics = {"cams/train/miou": 0.5, "cams/train/iou": {"cat": 0.25}}
    assert lookup(metrics, "cams/train/miou") == 0.5 and lookup(metrics, "cams/train/iou/cat") == 0.25
    assert lookup(metrics, "cams/train/iou/dog") is None and lookup(metrics, "cams/val/miou") is None


def test_an_xai_recipe_classifier_gets_table_5(tmp_path):
    kur = {"enabled": True, "alpha": 1.0}
    folder = run_folder(tmp_path, "xai", "classifier", "xai_voc07_resnet101", kur=kur)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["dataset"].update(name="voc07", val_split="test")
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    [cell] = Matcher().match(read_run(folder)).cells
    assert (cell.table, cell.row, cell.column, cell.metric) == (5, "F1 VOC07 Test", "KUR", "val/f1")
    config["stage"]["kur"]["alpha"] = "num_classes"   # KUR-α: no Table 5 column
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    assert Matcher().match(read_run(folder)).cells == []


def xai_run(root, recipe: str | None, kur: dict | None = None, methods=("cam", "gradcam", "minmax_cam")):
    """An xai run explaining the last.ckpt of a classifier run of `recipe`."""
    kur = kur or {"enabled": False, "alpha": 1.0}
    classifier = run_folder(root, "classifier", "classifier", recipe, kur=kur)
    folder = run_folder(root, "xai", "xai", None, checkpoint=str(classifier / "checkpoints" / "last.ckpt"),
                        methods=list(methods))
    (folder / "metrics.json").write_text(json.dumps({"xai/cam/ic": 30.0, "xai/minmax_cam/ad": 12.5}))
    return read_run(folder)


def test_an_xai_run_gets_the_xai_table_row_of_its_classifiers_recipe(tmp_path):
    run = xai_run(tmp_path, "xai_voc07_resnet101")
    match = Matcher().match(run)
    assert match.rows == [(4, f"{m} VOC07") for m in ("%IC", "%AD", "%ADO", "%AR", "%ARO", "F1-", "F1+")]
    assert {c.column for c in match.cells} == {"CAM", "MinMax-CAM"}   # the thesis has no Grad-CAM column
    assert match.recipe == ["stage=xai", "dataset=voc07", "backbone=resnet101", "stage.split=val"]
    assert [r.folder for r in match.upstream.values()] == [tmp_path / "classifier"]
    cell = next(c for c in match.cells if (c.row, c.column) == ("%IC VOC07", "CAM"))
    assert ours(run, cell) == 30.0   # the stage logs percentages: not scaled again


@pytest.mark.parametrize("recipe,kur,rows", [
    ("xai_voc07_vgg16", None, "VGG16"), ("xai_voc07_efficientnet_b6", None, "Eb6"),
    ("xai_coco17_resnet101", {"enabled": True, "alpha": 1.0}, "COCO17"),
    ("xai_planet_resnet101", None, "P:UAS")])
def test_the_table_follows_the_net_data_set_and_kur_of_the_recipe(tmp_path, recipe, kur, rows):
    table = 6 if kur else 4 if recipe.endswith("resnet101") else 3
    assert Matcher().match(xai_run(tmp_path, recipe, kur)).rows[0] == (table, f"%IC {rows}")


@pytest.mark.parametrize("recipe,kur", [
    ("xai_voc07_resnet101", {"enabled": True, "alpha": "num_classes"}),   # KUR-α: the tables use α = 1
    ("xai_voc07_vgg16", {"enabled": True, "alpha": 1.0})])                # Table 6 is RN101 only
def test_an_xai_recipe_outside_the_tables_is_said_why(tmp_path, recipe, kur):
    match = Matcher().match(xai_run(tmp_path, recipe, kur))
    assert match.cells == [] and "no Table 3, 4 or 6" in match.why_not


@pytest.mark.parametrize("recipe", [None, "voc12_rs269"])
def test_an_xai_run_of_another_classifier_has_no_row(tmp_path, recipe):
    match = Matcher().match(xai_run(tmp_path, recipe))
    assert match.cells == [] and match.why_not is None


@pytest.mark.parametrize("missing", ["run.json", "config.yaml"])
def test_a_folder_that_is_no_run_is_named(tmp_path, missing):
    folder = run_folder(tmp_path, "x", "classifier", "voc12_rs269")
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError, match=f"{missing}: not a run folder"):
        read_run(folder)
