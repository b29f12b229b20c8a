"""The thesis chain on a tree in the real VOC2012 + SBD layout (tests/fixtures/voc_layout.py), at test size.

`pipeline=wsss experiment=voc12_rs269` (each step its own recipe) and `pipeline=cam_generators` run end to
end: every stage predicts train_aug and val, and the train split is evaluated from the train_aug artifacts;
val is scored against its masks, which only SegmentationClass/ holds. The pipeline's last step puts the
thesis's rows of Tables 2, 7, 9 and 10 beside its numbers, each with the test-size overrides as its
departures from the recipe. Each `experiment=voc12_*` recipe is then composed and run for a few batches on the
same tree, its inputs being the chain's folders.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.voc_layout import ABSENT_FROM_VAL
from tests.helpers import ROOT
from wsss.data.voc import VOCDataset

pytestmark = pytest.mark.slow

#: the thesis chain at test size: ResNet-18 from scratch, one epoch a stage, 64 px crops, single-scale CAMs, CPU
TEST_SIZE = [
    "experiment=voc12_rs269", "backbone=resnet18", "backbone.pretrained=false", "trainer=cpu",
    "trainer.precision=32-true", "++trainer.accumulate_grad_batches=1", "dataset.crop_size=64",
    "dataset.min_size=56", "dataset.max_size=80", "stage.max_epochs=1", "stage.inference.scales=[1.0]",
    "num_workers=0", "logger=csv", "trainer.enable_progress_bar=false",
]
#: keys of the later steps' recipes, at test size: a radius and crops that fit 64 px images, one CRF process and
#: iteration, full-image PoolNet training on every image, DeepLab without its CRF, train_aug and val only
LATER_STEPS = [
    "++stage.radius=4", "++stage.crf_processes=1", "++stage.inference.pad_to=null",
    "++stage.affinity_labels.splits=[train_aug]", "++stage.pseudo.crf.t=1", "++stage.full_image_min_side=0",
    "++stage.crop_size=64", "++stage.inference.crf=null", "++stage.predict_splits=[train_aug,val]",
    "++stage.export.split=val",
]
STEPS = ("classifier", "pnoc", "ccam", "saliency", "affinity", "deeplab")


def run_py(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, HYDRA_FULL_ERROR="1", OMP_NUM_THREADS="1"))


def void_free_pixels(root: Path, split: str) -> tuple[int, int]:
    ds = VOCDataset(root, split)
    return len(ds.ids), sum(int((ds.load_mask(i) != 255).sum()) for i in ds.ids)


@pytest.fixture(scope="module")
def chain(module_tmp, voc_root):
    runs = module_tmp("voc_runs")
    common = [*TEST_SIZE, f"dataset.args.root={voc_root}", f"paths.runs_dir={runs}", f"paths.data_dir={runs}"]
    cams = f"++stage.evaluation.cams={runs}/pnoc/voc12/resnet18/default/cams"   # the recipes name RS269's
    done = run_py("pipeline=wsss", *common, *LATER_STEPS, cams, timeout=1800)  # a loaded machine
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    step_dirs = {s["id"]: Path(s["run_dir"]) for s in json.loads(
        (runs / "pipeline/wsss/voc12/resnet18/default/pipeline.json").read_text())}
    return {"runs": runs, "common": common, "stdout": done.stdout, "dirs": step_dirs, "root": voc_root}


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_wsss_pipeline_runs_every_step_and_prints_its_val_miou(chain):
    summary = json.loads((chain["runs"] / "pipeline/wsss/voc12/resnet18/default/metrics.json").read_text())
    val_miou = {"classifier": "cams/val/miou", "pnoc": "cams/val/miou", "ccam": "pseudo_saliency/val/fgbg_miou",
                "saliency": "saliency/val/fgbg_miou", "affinity": "pseudo_masks/val/miou",
                "deeplab": "predictions/val/miou"}
    for step, key in val_miou.items():
        assert 0.0 < summary[f"{step}/{key}"] <= 1.0, step
        assert f"{100 * summary[f'{step}/{key}']:.2f}" in chain["stdout"], step  # the printed table
    assert set(chain["dirs"]) == set(STEPS)


#: the published values of the chain's rows (percent), read off the thesis's Tables 7, 9, 10 and 2
THESIS_ROWS = {
    "classifier": {(7, "RS269 RA", "Max"): 49.3, (7, "RS269 RA", "TTA"): 53.9},
    "pnoc": {(7, "RS269 P-NOC+LS", "E1"): 50.6, (7, "RS269 P-NOC+LS", "Max"): 58.7,
             (7, "RS269 P-NOC+LS", "TTA"): 62.7},
    "ccam": {(9, "C2AM-H RS269 hints=RS269 P-NOC+LS cams=GT", "P"): 70.2,
             (9, "C2AM-H RS269 hints=RS269 P-NOC+LS cams=RS269 P-NOC+LS", "P"): 67.2},
    "saliency": {(9, "C2AM-H RS269 hints=RS269 P-NOC+LS cams=GT", "R"): 71.3,
                 (9, "C2AM-H RS269 hints=RS269 P-NOC+LS cams=RS269 P-NOC+LS", "R"): 68.4},
    "affinity": {(10, "P-OC+LS+C2AM-H+NOC", "train"): 73.59, (10, "P-OC+LS+C2AM-H+NOC", "val"): 73.37},
    "deeplab": {(2, "P-NOC+LS+C2AM-H", "val"): 71.5, (2, "P-NOC+LS+C2AM-H", "test"): 72.7},
}


def test_the_pipeline_writes_the_thesis_rows_beside_its_numbers_with_the_test_size_overrides(chain):
    folder = chain["runs"] / "pipeline/wsss/voc12/resnet18/default"
    report = {Path(r["run_dir"]): r for r in json.loads((folder / "thesis.json").read_text())["runs"]}
    assert (folder / "thesis.md").read_text() in (folder / "summary.md").read_text()
    for step, published in THESIS_ROWS.items():
        run = report[chain["dirs"][step]]
        cells = {(v["table"], v["row"], v["column"]): v for v in run["values"]}
        for key, value in published.items():
            assert cells[key]["thesis"] == value, (step, key)
        ours = [v for k, v in cells.items() if k in published and k[2] not in ("test", "Max", "E1")]
        assert ours and all(0.0 <= v["ours"] <= 100.0 for v in ours), step  # ours beside it
        # the overrides this test applied, each named as a departure from the step's recipe
        gone = run["departures"]
        assert gone[0].startswith("backbone=resnet18 (recipe: resne"), (step, gone)
        assert any(d.startswith("dataset.crop_size: ") and d.endswith("→ 64") for d in gone), (step, gone)
        assert any(d.startswith("stage.max_epochs: ") and d.endswith("→ 1") for d in gone), (step, gone)
    assert "stage.radius: 10 → 4" in report[chain["dirs"]["affinity"]]["departures"]
    assert "stage.pseudo.crf.t: 10 → 1" in report[chain["dirs"]["ccam"]]["departures"]


def test_val_is_scored_against_its_masks_and_train_comes_from_train_aug(chain):
    val_images, val_pixels = void_free_pixels(chain["root"], "val")
    train_images, train_pixels = void_free_pixels(chain["root"], "train")
    for step, prefixes in {"classifier": ["cams"], "pnoc": ["cams"], "affinity": ["cams", "rw"]}.items():
        m = metrics_of(chain["dirs"][step])
        for prefix in prefixes:
            assert (m[f"{prefix}/val/images"], m[f"{prefix}/val/pixels"]) == (val_images, val_pixels), step
            assert (m[f"{prefix}/train/images"], m[f"{prefix}/train/pixels"]) == (train_images, train_pixels), step
        # predicted once for train_aug; train was read from there (no second pass over it)
        own = chain["dirs"][step] / ("cams" if step != "affinity" else "rw")
        assert sorted(p.name for p in own.iterdir()) == ["train_aug", "val"], step
        absent = m[f"{prefixes[-1]}/val/iou"][ABSENT_FROM_VAL]   # no val pixel: NaN, or 0 where predicted
        assert absent != absent or absent == 0.0, step
    for step in ("ccam", "saliency"):
        assert metrics_of(chain["dirs"][step])["saliency/val/images"] == val_images, step
    scores = json.loads((chain["dirs"]["deeplab"] / "evaluation" / "val.json").read_text())
    assert int(np.asarray(scores["confusion"]).sum()) == val_pixels


def test_cam_generators_on_voc_shares_the_chain_runs(chain):
    done = run_py("pipeline=cam_generators", *chain["common"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    steps = {s["id"]: s for s in json.loads(
        (chain["runs"] / "pipeline/cam_generators/voc12/resnet18/default/pipeline.json").read_text())}
    for shared in ("classifier", "pnoc"):  # a one-epoch run at test size may also be marked LEARNED NOTHING
        assert steps[shared]["status"].startswith("up to date"), steps[shared]["status"]
    val_images, val_pixels = void_free_pixels(chain["root"], "val")
    for step in ("puzzle", "occse", "poc"):
        m = metrics_of(Path(steps[step]["run_dir"]))
        assert steps[step]["status"].startswith("ran") and 0.0 < m["cams/val/miou"] <= 1.0
        assert (m["cams/val/images"], m["cams/val/pixels"]) == (val_images, val_pixels)


# every recipe for a few batches, its inputs being the chain's folders
def recipe_overrides(chain, recipe: str) -> list[str]:
    d = chain["dirs"]
    tiny = [f"experiment={recipe}", "backbone=resnet18", "backbone.pretrained=false", "trainer=cpu",
            "trainer.precision=32-true", "++trainer.limit_train_batches=2", "++trainer.accumulate_grad_batches=1",
            "stage.max_epochs=1", "stage.batch_size=4", "dataset.crop_size=64",
            "dataset.min_size=56", "dataset.max_size=80", "dataset.predict_splits=[val]", "dataset.eval_splits=[val]",
            "num_workers=0", "logger=csv", "trainer.enable_progress_bar=false", f"dataset.args.root={chain['root']}"]
    inputs = {
        "voc12_ccamh_rs269": [f"stage.inputs.cams={d['pnoc'] / 'cams'}", "stage.crop_size=64",
                              f"stage.evaluation.cams={d['pnoc'] / 'cams'}", "stage.pseudo.crf.t=1"],
        "voc12_poolnet_rn50": [f"stage.inputs.pseudo_saliency={d['ccam'] / 'pseudo_saliency'}",
                               "stage.batch_size=1", "stage.full_image_min_side=0",  # full, tiny images
                               f"stage.evaluation.cams={d['pnoc'] / 'cams'}"],
        "voc12_affinity_rs269": [f"stage.inputs.cams={d['pnoc'] / 'cams'}", "stage.radius=4", "stage.crf_processes=1",
                                 f"stage.inputs.saliency={d['saliency'] / 'saliency'}", "stage.inference.pad_to=null",
                                 "stage.affinity_labels.splits=[train_aug]"],
        "voc12_deeplab_rs269": [f"stage.masks={d['affinity'] / 'pseudo_masks'}", "stage.inference.crf=null",
                                "stage.tasks=[fit,predict,evaluate]", "stage.predict_splits=[val]",
                                "stage.eval_splits=[val]"],
    }
    scales = [] if recipe == "voc12_affinity_rs269" else ["stage.inference.scales=[1.0]"]
    return [*tiny, *scales, *inputs.get(recipe, [])]


RECIPES = ("voc12_rs269_p", "voc12_rs269_pf", "voc12_rs269_poc", "voc12_rs269_poc_ls", "voc12_rs269_pnoc_ls",
           "voc12_ccamh_rs269", "voc12_poolnet_rn50", "voc12_affinity_rs269", "voc12_deeplab_rs269")


def test_every_voc12_recipe_runs_a_few_batches_on_the_voc_layout(chain):
    from tests.helpers import compose_config
    from wsss.tasks import run

    val_images, val_pixels = void_free_pixels(chain["root"], "val")
    for recipe in RECIPES:
        overrides = recipe_overrides(chain, recipe)
        if recipe.endswith(("_poc", "_poc_ls", "_pnoc_ls")):   # P-OC, P-NOC: the chain's classifier as the oc
            overrides.append(f"stage.oc_checkpoint={chain['dirs']['classifier'] / 'checkpoints/last.ckpt'}")
        run_dir = chain["runs"] / "recipes" / recipe
        metrics = run(compose_config(run_dir, chain["runs"], overrides, tiny=False))
        scored = {k: v for k, v in metrics.items() if k.endswith("val/miou") or k.endswith("val/fgbg_miou")}
        assert scored and all(0.0 <= v <= 1.0 for v in scored.values()), (recipe, sorted(metrics))
        if recipe == "voc12_deeplab_rs269":
            scores = json.loads((run_dir / "evaluation" / "val.json").read_text())
            assert int(np.asarray(scores["confusion"]).sum()) == val_pixels
        else:
            images = {v for k, v in metrics.items() if k.endswith("val/images")}
            assert images == {val_images}, recipe
