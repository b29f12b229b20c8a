"""`python run.py pipeline=wsss experiment=voc12_rs269 trainer=ddp pipeline.dry_run=true`: the six thesis steps,
each with its own recipe, wired to the earlier steps' folders; nothing runs."""
import os
import subprocess
import sys

from tests.helpers import ROOT

RECIPES = {"classifier": None, "pnoc": "voc12_rs269_pnoc_ls", "ccam": "voc12_ccamh_rs269",
           "saliency": "voc12_poolnet_rn50", "affinity": "voc12_affinity_rs269", "deeplab": "voc12_deeplab_rs269"}


def test_thesis_chain_dry_run_prints_six_commands_with_their_recipes(tmp_path):
    done = subprocess.run([sys.executable, "run.py", "pipeline=wsss", "experiment=voc12_rs269", "trainer=ddp",
                           "pipeline.dry_run=true", f"paths.runs_dir={tmp_path}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, HYDRA_FULL_ERROR="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    written = (tmp_path / "pipeline/wsss/voc12/resnest269/default/steps.txt").read_text().splitlines()
    assert len(written) == 6
    # each line asks SLURM for one task per device of its step: 4 GPUs, but PoolNet's one (its recipe)
    resources = [line.split(" -- ")[0] for line in written]
    four, one = "--nodes=1 --ntasks-per-node=4 --gpus-per-node=4", "--nodes=1 --ntasks-per-node=1 --gpus-per-node=1"
    assert resources == [four, four, four, one, four, four], resources
    lines = [line.split(" -- ", 1)[1] for line in written]
    for line, (stage, recipe) in zip(lines, RECIPES.items()):
        args = line.split()
        assert args[0] == f"stage={stage}" and "trainer=ddp" in args
        experiments = [a for a in args if a.startswith("experiment=")]
        assert experiments == [f"experiment={recipe or 'voc12_rs269'}"], line   # one recipe, never two
        assert f"python run.py {line}" in done.stdout
    runs = f"{tmp_path}/"
    assert f"stage.oc_checkpoint={runs}classifier/voc12/resnest269/default/checkpoints/last.ckpt" in lines[1]
    assert f"stage.inputs.cams={runs}pnoc/voc12/resnest269/default/cams" in lines[2]   # hints from P-NOC
    assert f"stage.inputs.pseudo_saliency={runs}ccam/voc12/resnest269/default/pseudo_saliency" in lines[3]
    assert f"stage.inputs.saliency={runs}saliency/voc12/resnet50/default/saliency" in lines[4]
    assert f"stage.masks={runs}affinity/voc12/resnest269/default/pseudo_masks" in lines[5]
    assert not any((tmp_path / stage).exists() for stage in RECIPES)   # a dry run runs nothing


def test_slurm_resources_follow_each_steps_trainer():
    from wsss.pipeline import slurm_resources

    gpu = {"accelerator": "gpu", "devices": 4, "num_nodes": 2}
    assert slurm_resources({"trainer": gpu}) == ["--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4"]
    assert slurm_resources({"trainer": {"accelerator": "cpu", "devices": 2}}) == [
        "--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0"]
    assert slurm_resources({"trainer": {"accelerator": "auto", "devices": 1}}) == ["--nodes=1", "--ntasks-per-node=1"]
    assert slurm_resources({"trainer": {"accelerator": "gpu", "devices": "auto"}}) == []


def test_the_sep2023_chain_runs_its_own_recipes_in_its_own_folders(tmp_path):
    """experiment=voc12_rs269_sep2023: the 42e611d chain, each step on its `_sep2023` recipe, wired to the
    sep2023 run folders (both chains can share one runs folder)."""
    done = subprocess.run([sys.executable, "run.py", "pipeline=wsss", "experiment=voc12_rs269_sep2023",
                           "trainer=ddp", "pipeline.dry_run=true", f"paths.runs_dir={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HYDRA_FULL_ERROR="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    written = (tmp_path / "pipeline/wsss/voc12/resnest269/sep2023/steps.txt").read_text().splitlines()
    lines = [line.split(" -- ", 1)[1] for line in written]
    for line, recipe in zip(lines, RECIPES.values()):
        experiments = [a for a in line.split() if a.startswith("experiment=")]
        assert experiments == [f"experiment={recipe or 'voc12_rs269'}_sep2023"], line
    runs = f"{tmp_path}/"
    assert f"stage.oc_checkpoint={runs}classifier/voc12/resnest269/sep2023/checkpoints/last.ckpt" in lines[1]
    assert f"stage.inputs.cams={runs}pnoc/voc12/resnest269/sep2023/cams" in lines[2]
    assert f"stage.inputs.pseudo_saliency={runs}ccam/voc12/resnest269/sep2023/pseudo_saliency" in lines[3]
    assert f"stage.inputs.saliency={runs}saliency/voc12/resnet50/sep2023/saliency" in lines[4]
    assert f"stage.masks={runs}affinity/voc12/resnest269/sep2023/pseudo_masks" in lines[5]
