"""Planning a pipeline: which steps run, with which overrides, and when a step counts as done (no training)."""
import json
import os
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from wsss.pipeline import PipelineError, Step, format_value, plan, split_overrides, why_not_done

STAGE_KEYS = {"classifier": {"lr": 0.1, "max_epochs": 15, "inference": {"scales": [1.0]}},
              "pnoc": {"lr": 0.1, "max_epochs": 15, "oc_checkpoint": None},
              "ccam": {"lr": 0.001, "max_epochs": 10, "inputs": {"cams": None}},
              "affinity": {"max_epochs": 3, "inputs": {"cams": None, "saliency": None}}}


def fake_composer(runs: Path):
    """Composes like run.py would, for a toy config: stage keys above, overrides applied strictly."""
    calls = []

    def compose(overrides):
        calls.append(list(overrides))
        plain = {"run_name": "default", "seed": 0}
        for text in overrides:
            key, _, value = text.partition("=")
            if key == "stage":
                plain["stage"] = {"name": value, **json.loads(json.dumps(STAGE_KEYS[value]))}
                continue
            node, *path = key.split(".")
            target = plain if not path else plain[node]
            for part in path[:-1]:
                target = target[part]
            last = path[-1] if path else node
            if path and last not in target:
                raise KeyError(f"Could not override {key!r}")
            target[last] = value
        return plain, runs / plain["stage"]["name"] / plain["run_name"]

    compose.calls = calls
    return compose


def make_conf(tmp_path: Path, stages=("classifier", "ccam", "affinity")) -> Path:
    (tmp_path / "conf" / "stage").mkdir(parents=True)
    for s in stages:
        (tmp_path / "conf" / "stage" / f"{s}.yaml").write_text(f"name: {s}\n")
    return tmp_path / "conf"


PIPELINE = {
    "name": "toy",
    "steps": {
        "classifier": {"stage": "classifier", "outputs": {"cams": "cams", "checkpoint": "checkpoints/last.ckpt"}},
        "pnoc": {"stage": "pnoc", "overrides": ["stage.oc_checkpoint=${outputs.checkpoint}"],
                 "outputs": {"cams": "cams"}},
        "ccam": {"stage": "ccam", "overrides": ["stage.inputs.cams=${outputs.cams}"],
                 "experiments": {"synthetic": ["stage.lr=0.002"]}, "outputs": {"saliency": "saliency"}},
        "affinity": {"stage": "affinity", "overrides": [
            "stage.inputs.cams=${steps.classifier.run_dir}/cams",
            "stage.inputs.saliency=${oc.select:outputs.nosuch,null}"]},
    },
}


def test_missing_stage_is_left_out_and_outputs_come_from_the_latest_step(tmp_path, caplog):
    compose = fake_composer(tmp_path / "runs")
    with caplog.at_level("INFO", logger="wsss.pipeline"):
        steps = plan(PIPELINE, ["seed=3"], ["stage.max_epochs=1", "stage.inference.scales=[1.0,2.0]",
                                            "++stage.inputs.saliency=x"], "default",
                     compose, experiment="synthetic", conf_dir=make_conf(tmp_path))
    assert [s.id for s in steps] == ["classifier", "ccam", "affinity"]
    assert "conf/stage/pnoc.yaml does not exist" in caplog.text
    cls, ccam, aff = steps
    # pnoc is left out, so ccam's CAMs are the classifier's.
    assert f"stage.inputs.cams={tmp_path}/runs/classifier/default/cams" in ccam.overrides
    assert ccam.needs == ["classifier"] and ccam.inputs == {f"{tmp_path}/runs/classifier/default/cams": "classifier"}
    assert "stage.inputs.saliency=null" in aff.overrides[:-1]
    # ++stage.key (a key the pipeline process's own default stage lacks): only where the key exists.
    assert aff.overrides[-1] == "stage.inputs.saliency=x"
    assert not any("saliency" in o for o in cls.overrides + ccam.overrides)
    # stage.* command-line keys go to the steps whose stage has them; the command line wins.
    assert "stage.inference.scales=[1.0,2.0]" in cls.overrides
    assert not any(o.startswith("stage.inference") for o in ccam.overrides + aff.overrides)
    assert all("stage.max_epochs=1" in s.overrides and "seed=3" in s.overrides for s in steps)
    assert ccam.overrides.index("stage.lr=0.002") < ccam.overrides.index("stage.max_epochs=1")
    assert cls.overrides[0] == "stage=classifier" and cls.run_dir == tmp_path / "runs" / "classifier" / "default"
    assert ccam.plain["stage"]["lr"] == "0.002"  # experiment-specific step override


def test_pnoc_present_takes_over_the_cams(tmp_path):
    steps = plan(PIPELINE, [], [], "r1", fake_composer(tmp_path / "runs"),
                 conf_dir=make_conf(tmp_path, ("classifier", "pnoc", "ccam")))
    pnoc, ccam = steps[1], steps[2]
    assert f"stage.oc_checkpoint={tmp_path}/runs/classifier/r1/checkpoints/last.ckpt" in pnoc.overrides
    assert f"stage.inputs.cams={tmp_path}/runs/pnoc/r1/cams" in ccam.overrides
    assert "stage.lr=0.002" not in ccam.overrides  # no experiment selected


def test_plan_errors_name_the_step(tmp_path):
    conf = make_conf(tmp_path, ("classifier", "ccam"))
    bad_ref = {"name": "t", "steps": {"ccam": {"stage": "ccam", "overrides": ["stage.inputs.cams=${steps.pnoc.run_dir}"]}}}
    with pytest.raises(PipelineError, match="step 'ccam'.*steps.pnoc"):
        plan(bad_ref, [], [], "d", fake_composer(tmp_path / "runs"), conf_dir=conf)
    twice = {"name": "t", "steps": {"a": {"stage": "classifier"}, "b": {"stage": "classifier"}}}
    with pytest.raises(PipelineError, match="'a' and 'b' would share the run folder"):
        plan(twice, [], [], "d", fake_composer(tmp_path / "runs"), conf_dir=conf)
    with pytest.raises(PipelineError, match="no step of the pipeline has these keys"):
        plan(twice | {"steps": {"a": {"stage": "classifier"}}}, [], ["stage.nosuch=1"], "d",
             fake_composer(tmp_path / "runs"), conf_dir=conf)
    with pytest.raises(PipelineError, match=r"\['\+stage.lrr=0.5'\]: no step of the pipeline has these keys"):
        plan(twice | {"steps": {"a": {"stage": "classifier"}}}, [], ["+stage.lrr=0.5"], "d",
             fake_composer(tmp_path / "runs"), conf_dir=conf)  # added with +, but no stage reads it


def test_command_line_split_and_value_format():
    general, stage = split_overrides(["pipeline=wsss", "pipeline.dry_run=true", "run_name=x", "stage=pnoc",
                                      "dataset=voc12", "stage.lr=0.1", "+stage.extra=1", "trainer=ddp"])
    assert general == ["dataset=voc12", "trainer=ddp"]
    assert stage == ["stage.lr=0.1", "+stage.extra=1"]
    assert format_value(None) == "null" and format_value([1, "a", True]) == "[1,a,true]"
    assert format_value({"t": 10}) == "{t:10}"


def _finished_step(tmp_path: Path) -> Step:
    plain = {"stage": {"name": "classifier", "lr": 0.1, "inference": {"scales": [1.0]}}, "seed": 0,
             "trainer": {"devices": 1}, "tasks": None}
    run_dir = tmp_path / "run"
    (run_dir / "cams" / "val").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(plain))
    (run_dir / "cams" / "val" / "manifest.json").write_text(json.dumps({"config_hash": "abc"}))
    time.sleep(0.01)
    (run_dir / "metrics.json").write_text(json.dumps({"cams/val/miou": 0.5}))
    return Step("cls", "classifier", [], run_dir, plain, ["*miou"])


def test_up_to_date_needs_a_finished_run_of_the_same_config(tmp_path):
    step = _finished_step(tmp_path)
    assert why_not_done(step) is None
    # How it ran (trainer) does not matter; what it computes does.
    step.plain = {**step.plain, "trainer": {"devices": 4}}
    assert why_not_done(step) is None
    step.plain = {**step.plain, "stage": {**step.plain["stage"], "inference": {"scales": [1.0, 2.0]}}}
    assert why_not_done(step) == "its configuration changed: stage.inference.scales: [1.0] → [1.0, 2.0]"


def test_not_up_to_date_after_an_unfinished_restart(tmp_path):
    step = _finished_step(tmp_path)
    cfg = step.run_dir / "config.yaml"
    later = time.time() + 5
    os.utime(cfg, (later, later))  # a rerun started (config.yaml rewritten) but did not write metrics.json
    assert why_not_done(step) == "a later run of it did not finish"
    os.utime(cfg, (later - 10, later - 10))
    assert why_not_done(step) is None
    (step.run_dir / "metrics.json").unlink()
    assert why_not_done(step) == "not finished"
