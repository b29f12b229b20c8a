"""Damaged artifacts (wsss/artifacts.py): named when read, with the command that rewrites them; rewritten by a
resumed writer (the manifest records each file's size); a damaged manifest named; a true hint for a split."""
from __future__ import annotations

import json

import numpy as np
import pytest

from wsss.artifacts import ArtifactDir, DamagedArtifact, open_split

IDS = ["a", "b", "c"]


def folder_in_run(tmp_path, suffix=".npz") -> ArtifactDir:
    run_dir = tmp_path / "classifier" / "synthetic" / "resnet18" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"stage": "classifier", "predict_splits": ["train", "val"],
                                                  "overrides": ["stage=classifier", "run_name=r"]}))
    folder = ArtifactDir(run_dir / "cams" / "val", suffix)
    folder.begin({"checkpoint": "untrained", "settings": "s"})
    for i in IDS:
        if suffix == ".npz":
            folder.write_npz(i, cams=np.ones((2, 4, 4), np.float16), keys=np.array([0, 1]))
        else:
            folder.write_png(i, np.zeros((4, 4), np.uint8))
    folder.write_manifest(ids=IDS, dataset="synthetic", kind="cams")
    return folder


@pytest.mark.parametrize("suffix", [".npz", ".png"])
def test_a_truncated_file_is_named_when_read_and_rewritten_by_a_resumed_writer(tmp_path, suffix):
    folder = folder_in_run(tmp_path, suffix)
    path = folder.path("b")
    path.write_bytes(path.read_bytes()[:-30])  # a copy cut short
    with pytest.raises(DamagedArtifact) as error:
        folder.read_npz("b") if suffix == ".npz" else folder.read_png("b")
    message = str(error.value)
    assert str(path) in message and "python run.py stage=classifier run_name=r" in message, message
    assert folder.missing(IDS) == ["b"]  # what predict writes again; existence alone kept it
    folder.invalidate()  # an unfinished folder: no recorded sizes, the file's end tells
    assert folder.missing(IDS) == ["b"]
    path.write_bytes(b"")
    assert folder.missing(IDS) == ["b"]


def test_a_file_of_another_size_than_recorded_is_rewritten(tmp_path):
    folder = folder_in_run(tmp_path)
    path = folder.path("a")
    np.savez(path.open("wb"), cams=np.ones((3, 4, 4), np.float16))  # whole, but not the file listed
    assert folder.missing(IDS) == ["a"]


def test_a_damaged_manifest_is_named(tmp_path):
    folder = folder_in_run(tmp_path)
    folder.manifest_path.write_text('{"ids": ["a", "b"')
    with pytest.raises(ValueError, match=f"{folder.manifest_path}: the manifest is damaged"):
        open_split(folder.root.parent, "val", IDS, ".npz", "synthetic")


def test_the_hint_for_a_predicted_split_with_other_ids_is_true(tmp_path):
    folder = folder_in_run(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        open_split(folder.root.parent, "val", [*IDS, "d"], ".npz", "synthetic")  # the split gained an image
    message = str(error.value)
    assert "do not cover" not in message and "predicts 'val'" in message
    assert f"Delete {folder.root}" in message
