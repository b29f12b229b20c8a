"""A split is a list of ids: a consumer reads split S from any finished folder covering S's ids."""
import json

import numpy as np
import pytest

from wsss.artifacts import ArtifactDir, open_split, stale_reason


def finished(root, split, ids, **extra):
    folder = ArtifactDir(root / split, ".npz")
    folder.begin({"checkpoint": "untrained", "settings": "s"})
    for i in ids:
        folder.write_npz(i, cams=np.zeros((1, 2, 2), np.float32))
    folder.write_manifest(ids=ids, dataset="voc12", split=split, **extra)
    return folder


def test_train_is_read_from_the_train_aug_folder_that_holds_its_ids(tmp_path):
    cams = tmp_path / "run" / "cams"
    finished(cams, "train_aug", ["a", "b", "c", "d"])
    folder = open_split(cams, "train", ["b", "a"], ".npz", "voc12")
    assert folder.root == cams / "train_aug" and not (cams / "train").exists()
    with pytest.raises(ValueError, match="dataset='voc12'"):
        open_split(cams, "train", ["a"], ".npz", "coco14")
    with pytest.raises(FileNotFoundError, match="split 'val'"):
        open_split(cams, "val", ["a", "z"], ".npz", "voc12")   # z is in no folder


def test_a_missing_split_names_the_producing_run_and_its_command(tmp_path):
    run_dir = tmp_path / "pnoc" / "voc12" / "resnet18" / "default"
    finished(run_dir / "cams", "val", ["v"])
    (run_dir / "run.json").write_text(json.dumps({
        "stage": "pnoc", "predict_splits": ["val"],
        "overrides": ["stage=pnoc", "dataset=voc12", "tasks=[predict]", "dataset.predict_splits=[val]"]}))
    with pytest.raises(FileNotFoundError) as e:
        open_split(run_dir / "cams", "train_aug", ["a"], ".npz", "voc12")
    assert "stage=pnoc" in str(e.value) and str(run_dir) in str(e.value)
    # the producer's own command, its tasks and predict splits replaced: fit resumes, the split is added
    assert "python run.py stage=pnoc dataset=voc12 dataset.predict_splits=[val,train_aug]" in str(e.value)


def test_a_folder_nobody_ran_in_is_named_by_its_path(tmp_path):
    cams = tmp_path / "classifier" / "voc12" / "resnet18" / "default" / "cams"
    with pytest.raises(FileNotFoundError, match="stage=classifier dataset=voc12 backbone=resnet18 run_name=default"):
        open_split(cams, "train_aug", ["a"], ".npz", "voc12")


def test_files_of_another_producer_are_removed_before_writing(tmp_path):
    folder = finished(tmp_path / "cams", "val", ["a", "b"])
    same = {"checkpoint": "untrained", "settings": "s"}
    assert folder.begin(same) is False and folder.missing(["a", "b"]) == []
    assert folder.begin({**same, "settings": "other"}) is True and folder.missing(["a", "b"]) == ["a", "b"]


def test_stale_reason_sees_a_changed_checkpoint_and_a_changed_input(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"one")
    inputs = tmp_path / "in" / "cams"
    finished(inputs, "val", ["a"])
    from wsss.artifacts import checkpoint_identity, folder_identity

    out = ArtifactDir(tmp_path / "out" / "val", ".npz")
    out.begin({"checkpoint": checkpoint_identity(ckpt), "settings": "s",
               "inputs": {str(inputs): folder_identity(inputs)}})
    out.write_manifest(ids=[])
    assert stale_reason(out) is None
    finished(inputs, "val", ["a", "b"])                  # the input folder was rewritten
    assert "made from" in stale_reason(out)
    ckpt.write_bytes(b"two")                             # and the weights changed
    assert "older" in stale_reason(out)
