"""Each stage declares its tasks, artifact and not-output keys in its own file; the runner, the scan, the
pipeline's disk estimate and the identity read that declaration alone."""
from pathlib import Path

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from wsss.identity import output_settings, training_identity
from wsss.stage_contract import (EVALUATE, FIT, PREDICT, Artifact, Task, checked_task_names, data_read,
                                 written_artifacts)

CONF = Path(__file__).resolve().parents[1] / "conf" / "stage"
STAGES = sorted(p.stem for p in CONF.glob("*.yaml"))


def stage_cls(name: str):
    return get_class(OmegaConf.load(CONF / f"{name}.yaml")["_target_"])


@pytest.mark.parametrize("name", STAGES)
def test_every_stage_declares_what_it_runs_and_writes(name):
    cls, yaml = stage_cls(name), OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    assert set(cls.default_tasks) <= set(cls.tasks), "a default task the stage does not declare"
    assert all(isinstance(t, Task) and callable(t.run) for t in cls.tasks.values())
    assert cls.artifact is None or isinstance(cls.artifact, Artifact)
    # a declared not-output key is a key of the stage's config (a misspelt one would change nothing)
    assert set(cls.not_output_keys) <= set(yaml), set(cls.not_output_keys) - set(yaml)


def test_the_affinity_stage_reads_and_writes_what_its_tasks_declare():
    cls = stage_cls("affinity")
    tasks = list(cls.default_tasks)
    assert data_read(cls, tasks) == [FIT, PREDICT, EVALUATE]
    plain = {"stage": {"affinity_labels": {"splits": None}}, "dataset": {"train_split": "tr", "predict_splits": ["a"]}}
    assert [(a.kind, a.suffix, a.splits(plain)) for a in written_artifacts(cls, tasks)] == [
        ("affinity_labels", ".png", ["tr"]), ("rw", ".npz", ["a"]), ("pseudo_masks", ".png", ["a"])]
    plain["stage"]["affinity_labels"]["splits"] = ["x", "y"]
    assert written_artifacts(cls, ["affinity_labels"])[0].splits(plain) == ["x", "y"]
    assert written_artifacts(cls, ["fit", "evaluate"]) == []


def test_an_unknown_task_is_refused_with_the_stages_own_list():
    cls = stage_cls("deeplab")
    plain = {"stage": {"name": "deeplab"}, "tasks": ["fit", "cam_masks"]}
    with pytest.raises(ValueError, match=r"no task \['cam_masks'\]; its tasks are \['evaluate', 'export', 'fit'"):
        checked_task_names(cls, plain)
    assert checked_task_names(cls, {"stage": {"name": "deeplab"}}) == ["fit", "predict", "evaluate"]


def test_identity_leaves_out_the_keys_the_stage_declares():
    target = OmegaConf.load(CONF / "deeplab.yaml")["_target_"]
    plain = {"stage": {"_target_": target, "lr": 0.1, "export": {"split": "test"}, "inference": {"scales": [1]}},
             "dataset": {"name": "d", "args": {}}, "backbone": {"name": "b"}}
    other_export = {**plain, "stage": {**plain["stage"], "export": {"split": "val"}}}
    other_inference = {**plain, "stage": {**plain["stage"], "inference": {"scales": [2]}}}
    assert output_settings(other_export) == output_settings(plain)
    assert output_settings(other_inference) != output_settings(plain)
    assert training_identity(other_inference) == training_identity(plain)
    undeclared = {**plain, "stage": {**plain["stage"], "_target_": "wsss.stages.classifier.ClassifierStage"}}
    assert output_settings({**undeclared, "stage": {**undeclared["stage"], "export": 1}}) != \
        output_settings(undeclared)
