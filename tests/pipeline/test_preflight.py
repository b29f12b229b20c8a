"""wsss/preflight.py on composed steps, in-process: the disk and input checks of the dry run."""
import pytest

from tests.fixtures.voc_archives import make_voc12_archives
import wsss.app  # noqa: F401  (the resolvers conf/ uses)
from wsss import preflight
from wsss.data.prepare.__main__ import main as prepare_main
from wsss.pipeline import Step, StepComposer


@pytest.fixture(scope="module")
def voc_root(module_tmp):
    folder = module_tmp("prepared")
    archives = make_voc12_archives(folder / "archives")
    root = folder / "VOC2012"
    assert prepare_main(["voc12", "--voc", str(archives.voc), "--sbd", str(archives.sbd), "--out", str(root),
                         "--no-verify"]) == 0
    return root


def step(stage, root, runs, *overrides):
    args = [f"stage={stage}", "dataset=voc12", f"dataset.args.root={root}", "backbone=resnet18",
            "backbone.pretrained=false", f"paths.runs_dir={runs}", *overrides]
    plain, run_dir = StepComposer()(args)
    return Step(stage, stage, args, run_dir, plain, [])


def not_run(_step):
    return "not run yet"


def test_artifacts_larger_than_the_free_space_make_the_step_fail(voc_root, tmp_path, monkeypatch):
    classifier = step("classifier", voc_root, tmp_path)
    status, check = preflight.check_steps([classifier], not_run)["classifier"]
    assert status == "runs (not run yet)" and check.disk_bytes > 0
    monkeypatch.setattr(preflight, "free_bytes", lambda folder: check.disk_bytes - 1)
    status, _ = preflight.check_steps([classifier], not_run)["classifier"]
    assert status.startswith("would fail: disk: the steps up to this one write about") and str(tmp_path) in status


def test_an_input_no_step_makes_must_exist(voc_root, tmp_path):
    absent = tmp_path / "elsewhere" / "last.ckpt"
    pnoc = step("pnoc", voc_root, tmp_path, f"stage.oc_checkpoint={absent}")
    status, _ = preflight.check_steps([pnoc], not_run)["pnoc"]
    assert status == f"would fail: inputs: stage.oc_checkpoint={absent} does not exist and no earlier step makes it"
    absent.parent.mkdir()
    absent.write_bytes(b"weights")
    assert preflight.check_steps([pnoc], not_run)["pnoc"][0] == "runs (not run yet)"
