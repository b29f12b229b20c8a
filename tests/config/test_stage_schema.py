"""A stage's config against its schema, conf/stage/<stage>.yaml (wsss/stage_schema.py): a value of the wrong type
and a `+stage.` key the stage does not read are refused at compose time, naming the key; the shared presets
(debug=tiny, experiment=synthetic), which set keys for several stages, pass for every stage."""
from __future__ import annotations

import pickle

import pytest

from wsss.stage_schema import Settings, accepts, composed_config_problems, config_problems, stage_defaults

STAGES = ["affinity", "ccam", "classifier", "deeplab", "occse", "pnoc", "poc", "puzzle", "saliency", "xai"]


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_passes_its_schema_under_the_shared_presets(stage, make_cfg):
    cfg = make_cfg(f"stage={stage}", "experiment=synthetic")  # + debug=tiny (make_cfg's default)
    assert composed_config_problems(cfg) == []


def test_wrong_types_are_named_with_the_expected_type(make_cfg):
    cfg = make_cfg("stage=pnoc", "stage.lr=abc", "stage.inference.flip=3", "stage.noc.delta=null",
                   "stage.inference.scales=[a]", "stage.max_epochs=1.5")
    assert sorted(composed_config_problems(cfg)) == sorted([
        "stage.max_epochs=1.5: expected an integer (conf/stage/pnoc.yaml: max_epochs: 15)",
        "stage.lr='abc': expected a number (conf/stage/pnoc.yaml: lr: 0.1)",
        ("stage.inference.scales=['a']: expected a list whose items are each a number, like "
         "[0.5, 1.0, 1.5, 2.0] (conf/stage/pnoc.yaml)"),
        "stage.inference.flip=3: expected true or false (conf/stage/pnoc.yaml: flip: true)",
        "stage.noc.delta=null: expected a number (conf/stage/pnoc.yaml: 0.2; null is not one of its values)",
    ])


def test_max_epochs_may_be_null_only_under_a_budget_in_optimiser_steps(make_cfg):
    assert composed_config_problems(make_cfg("stage=deeplab", "stage.max_epochs=null",
                                             "stage.max_steps=150")) == []
    assert composed_config_problems(make_cfg("stage=deeplab", "stage.max_epochs=null")) == [
        "stage.max_epochs=null: expected an integer (conf/stage/deeplab.yaml: 15; null is not one of its values)"]


def test_ranges_are_checked_once_the_types_are_right(make_cfg):
    assert composed_config_problems(make_cfg("stage=pnoc", "stage.lr=-1")) == [
        "stage.lr=-1: expected a number >= 0"]


def test_an_added_key_the_stage_does_not_read_is_refused_with_the_nearest_keys(make_cfg):
    cfg = make_cfg("stage=classifier", "+stage.lrr=0.5", "+stage.inference.scalez=[1.0]")
    lrr, scalez = composed_config_problems(cfg, ["lrr", "inference.scalez"])
    assert lrr == ("+stage.lrr on the command line: stage classifier does not read lrr "
                   "(conf/stage/classifier.yaml); did you mean stage.lr?")
    assert scalez.startswith("+stage.inference.scalez on the command line: stage classifier does not read "
                             "inference.scalez (conf/stage/classifier.yaml); did you mean stage.inference.scales")
    # an option inside a mapping passed on as it is (DeepLab's `evaluation: {}`) is read
    assert accepts("deeplab", "evaluation.thresholds") and not accepts("classifier", "evaluation.thresholdz")
    cfg = make_cfg("stage=deeplab", "+stage.evaluation.thresholds=[0.5]")
    assert composed_config_problems(cfg, ["evaluation.thresholds"]) == []


def test_a_key_of_no_stage_in_a_config_file_is_refused():
    stage = {**stage_defaults("classifier"), "lrr": 0.5, "radius": 4}  # radius: affinity's (debug=tiny sets it)
    assert config_problems({"stage": stage}) == [
        "stage.lrr is a key of no stage (stage classifier: did you mean stage.lr?)"]


def test_settings_read_as_attributes_and_name_a_missing_key():
    s = Settings({"lr": 0.1, "inference": {"scales": [1.0]}})
    assert s.lr == 0.1 and s.inference.scales == [1.0] and s == {"lr": 0.1, "inference": {"scales": [1.0]}}
    with pytest.raises(AttributeError, match=r"stage\.inference\.flip is not set"):
        _ = s.inference.flip
    assert pickle.loads(pickle.dumps(s)).inference.scales == [1.0]  # DDP spawn hands the module over


def test_the_schema_reads_each_stage_file_as_hydra_composes_it(make_cfg):
    from omegaconf import OmegaConf

    for stage in STAGES:  # the shared optimiser files included, each stage's own values after them
        composed = OmegaConf.to_container(make_cfg(f"stage={stage}", tiny=False).stage, resolve=False)
        assert stage_defaults(stage) == composed, stage


def test_a_stage_names_another_stages_run_folder_by_the_run_folder_layout(make_cfg):
    cfg = make_cfg("stage=xai", "stage.classifier_run=kur", "dataset=voc07", "backbone=vgg16", tiny=False)
    assert cfg.stage.checkpoint == f"{cfg.paths.runs_dir}/classifier/voc07/vgg16/kur/checkpoints/last.ckpt"
    cfg = make_cfg("stage=ccam", tiny=False)
    assert cfg.stage.inputs.cams == f"{cfg.paths.runs_dir}/classifier/synthetic/resnet50/default/cams"
