"""`python run.py pipeline=wsss experiment=coco14_rs269[_poc_chain] pipeline.dry_run=true` and
`pipeline=cam_generators experiment=coco14_rs269`: every step printed with its COCO 2014 recipe, wired to the
earlier steps' folders; nothing runs."""
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

RECIPES = {"classifier": None, "pnoc": "coco14_rs269_pnoc_ls", "ccam": "coco14_ccamh_rs269",
           "saliency": "coco14_poolnet_rn50", "affinity": "coco14_affinity_rs269",
           "deeplab": "coco14_deeplab_rs269"}


def dry_run(tmp_path, pipeline: str, experiment: str) -> tuple[str, list[str]]:
    done = subprocess.run([sys.executable, "run.py", f"pipeline={pipeline}", f"experiment={experiment}",
                           "trainer=ddp", "pipeline.dry_run=true", f"paths.runs_dir={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HYDRA_FULL_ERROR="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    steps = (tmp_path / f"pipeline/{pipeline}/coco14/resnest269/default/steps.txt").read_text().splitlines()
    lines = [line.split(" -- ", 1)[-1] for line in steps]
    for line in lines:
        assert f"python run.py {line}" in done.stdout
    return done.stdout, lines


def arg(line: str, key: str) -> list[str]:
    return [a.split("=", 1)[1] for a in line.split() if a.startswith(key + "=")]


@pytest.mark.parametrize("experiment,cams_stage,cams_recipe", [
    ("coco14_rs269", "pnoc", "coco14_rs269_pnoc_ls"),
    ("coco14_rs269_poc_chain", "poc", "coco14_rs269_poc"),    # the thesis's 36.4 % chain
])
def test_wsss_dry_run_prints_each_step_with_its_coco_recipe(tmp_path, experiment, cams_stage, cams_recipe):
    stdout, lines = dry_run(tmp_path, "wsss", experiment)
    assert len(lines) == 6
    for line, (stage, recipe) in zip(lines, {**RECIPES, "pnoc": cams_recipe}.items()):
        stage = cams_stage if stage == "pnoc" else stage
        assert arg(line, "stage") == [stage] and arg(line, "experiment") == [recipe or experiment], line
    runs = f"{tmp_path}/"
    assert f"stage.oc_checkpoint={runs}classifier/coco14/resnest269/default/checkpoints/last.ckpt" in lines[1]
    assert f"stage.inputs.cams={runs}{cams_stage}/coco14/resnest269/default/cams" in lines[2]
    assert f"stage.inputs.cams={runs}{cams_stage}/coco14/resnest269/default/cams" in lines[4]
    assert f"stage.masks={runs}affinity/coco14/resnest269/default/pseudo_masks" in lines[5]
    assert not any((tmp_path / stage).exists() for stage in ("classifier", "pnoc", "poc", "deeplab"))


def test_cam_generators_dry_run_uses_the_coco_runners_recipes(tmp_path):
    _, lines = dry_run(tmp_path, "cam_generators", "coco14_rs269")
    recipes = {arg(line, "stage")[0]: arg(line, "experiment") for line in lines}
    assert recipes == {"classifier": ["coco14_rs269"], "puzzle": ["coco14_rs269"], "occse": ["coco14_rs269"],
                       "poc": ["coco14_rs269_poc"], "pnoc": ["coco14_rs269_pnoc_ls"]}


def test_recipes_carry_the_runners_values(make_cfg):
    """The values the COCO runners give (not the VOC recipes'), read back from the composed configs."""
    poc = make_cfg("experiment=coco14_rs269_poc", tiny=False)
    s = poc.stage
    assert (s.name, poc.backbone.name, s.batch_size, s.lr, s.weight_decay, s.label_smoothing) == \
        ("poc", "resnest269", 32, 0.2, 5.0e-5, 0.0)           # 16 x 2 summed at lr 0.1 = 32 at lr 0.2
    rs101 = make_cfg("experiment=coco14_rs101_poc", tiny=False)
    assert (rs101.backbone.name, rs101.stage.batch_size, rs101.stage.lr) == ("resnest101", 32, 0.1)
    pnoc = make_cfg("experiment=coco14_rs269_pnoc_ls", tiny=False)
    assert (pnoc.stage.noc.delta, pnoc.stage.label_smoothing, pnoc.trainer.precision) == \
        (0.2, 0.1, "16-mixed")
    ccam = make_cfg("experiment=coco14_ccamh_rs269", tiny=False)
    assert (ccam.dataset.name, ccam.stage.lr, ccam.stage.hints.delta_fg) == ("coco14", 0.0005, 0.3)
    aff = make_cfg("experiment=coco14_affinity_rs269", tiny=False)
    labels = aff.stage.affinity_labels
    assert (labels.fg_threshold, labels.bg_threshold, aff.dataset.crop_size, aff.stage.inference.pad_to) == \
        (0.30, 0.80, 640, 640)
    dl = make_cfg("experiment=coco14_deeplab_rs269", tiny=False)
    assert (dl.dataset.name, dl.stage.lr, dl.stage.label_smoothing, dl.dataset.crop_size) == \
        ("coco14", 0.004, 0.1, 640)
    assert dl.dataset.args.ids_file == "{split}.txt"
