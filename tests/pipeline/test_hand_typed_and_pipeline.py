"""The README's order: `python run.py experiment=synthetic`, `python run.py stage=pnoc experiment=synthetic`,
then `python run.py pipeline=wsss experiment=synthetic` reuses both runs (each step composes what the
hand-typed command composes); a run folder or pipeline step of another configuration names the keys that
differ."""
from __future__ import annotations

import functools
import json

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from wsss.app import CONF_DIR
from wsss.config_diff import differences
from wsss.identity import comparable
from wsss.pipeline import Step, StepComposer, plan, split_overrides, why_not_done
from wsss.tasks import record_run

PATHS = ["paths.runs_dir=/r", "paths.data_dir=/d", "paths.root=/x"]


@functools.lru_cache(maxsize=None)
def pipeline_steps(experiment: str) -> dict[str, Step]:
    GlobalHydra.instance().clear()
    command = ["pipeline=wsss", f"experiment={experiment}", *PATHS]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=command)
        general, stage_keys = split_overrides(command)
        steps = plan(OmegaConf.to_container(cfg.pipeline, resolve=False), general, stage_keys, cfg.run_name,
                     StepComposer(), experiment=experiment)
    GlobalHydra.instance().clear()
    return {s.id: s for s in steps}


def hand_typed_with_folder(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        plain, run_dir = StepComposer()([*overrides, *PATHS])
    GlobalHydra.instance().clear()
    return plain, run_dir


def hand_typed(*overrides: str) -> dict:
    return hand_typed_with_folder(*overrides)[0]


def hand_typed_run_dir(*overrides: str):
    return hand_typed_with_folder(*overrides)[1]


@pytest.mark.parametrize("experiment", ["synthetic", "synthetic_full"])
@pytest.mark.parametrize("stage", ["classifier", "pnoc", "ccam", "saliency", "affinity", "deeplab"])
def test_the_pipelines_step_is_the_hand_typed_command(stage, experiment):
    """Each step's settings come with the experiment (conf/experiment_stage/), none from the pipeline."""
    step = pipeline_steps(experiment)[stage]
    typed = hand_typed(f"stage={stage}", f"experiment={experiment}")
    assert differences(comparable(typed), comparable(step.plain)) == []
    assert step.run_dir == hand_typed_run_dir(f"stage={stage}", f"experiment={experiment}")
    if stage in ("classifier", "pnoc"):
        assert step.plain["stage"]["label_smoothing"] == (0.1 if stage == "pnoc" else 0.0)


def test_the_experiments_stage_settings_reach_the_step():
    steps = pipeline_steps("synthetic")
    assert steps["ccam"].plain["stage"]["lr"] == 0.001 and steps["ccam"].plain["stage"]["hints"]["enabled"]
    assert steps["affinity"].plain["stage"]["backbone_checkpoint"] == str(
        steps["pnoc"].run_dir / "checkpoints" / "last.ckpt")
    assert steps["deeplab"].plain["stage"]["masks"] == str(steps["affinity"].run_dir / "pseudo_masks")
    # the CAM stages infer at one scale; DeepLab keeps its step's two (a list from wsss.per_stage)
    assert steps["classifier"].plain["stage"]["inference"]["scales"] == [1.0]
    assert steps["deeplab"].plain["stage"]["inference"]["scales"] == [1.0, 1.5]
    full = pipeline_steps("synthetic_full")
    assert full["saliency"].plain["stage"]["max_epochs"] == 12 and full["ccam"].plain["stage"]["lr"] == 0.001
    assert full["deeplab"].plain["stage"]["max_epochs"] == steps["deeplab"].plain["stage"]["max_epochs"]
    assert {s.run_dir.name for s in full.values()} == {"full"}


def test_the_experiment_sets_label_smoothing_per_stage():
    values = {s: hand_typed(f"stage={s}", "experiment=synthetic")["stage"]["label_smoothing"]
              for s in ("classifier", "puzzle", "occse", "poc", "pnoc")}
    assert values == {"classifier": 0.0, "puzzle": 0.0, "occse": 0.0, "poc": 0.1, "pnoc": 0.1}


def test_a_refused_run_folder_names_the_keys_that_differ(tmp_path):
    old = hand_typed("stage=pnoc", "experiment=synthetic", "stage.label_smoothing=0.0")
    new = hand_typed("stage=pnoc", "experiment=synthetic")
    record_run(OmegaConf.create(old), old, tmp_path)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(RuntimeError, match=r"stage\.label_smoothing: 0\.0 → 0\.1"):
        record_run(OmegaConf.create(new), new, tmp_path)


def test_the_dry_run_names_the_keys_that_changed(tmp_path):
    old = hand_typed("stage=pnoc", "experiment=synthetic", "seed=1")
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(old)))
    (tmp_path / "metrics.json").write_text(json.dumps({}))
    step = Step("pnoc", "pnoc", [], tmp_path, hand_typed("stage=pnoc", "experiment=synthetic"), [])
    assert why_not_done(step) == "its configuration changed: seed: 1 → 0"


def test_differences_flattens_and_marks_absent_keys():
    assert differences({"a": {"b": 1, "c": [1]}}, {"a": {"b": 2, "c": [1], "d": 0}}) == [
        "a.b: 1 → 2", "a.d: (absent) → 0"]
