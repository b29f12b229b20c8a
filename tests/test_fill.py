"""The fill loop: only the missing files are computed, a folder of another producer is redone, and the
manifest is written last, never over a folder that lacks a file."""
import numpy as np
import pytest

from wsss.artifacts import ArtifactDir
from wsss.fill import fill, finish


def constant(value: int) -> np.ndarray:
    return np.full((2, 3), value, np.uint8)


def items_of(ids, calls):
    calls.extend(ids)
    return ((i, (int(i),)) for i in ids)


def test_fill_writes_the_missing_files_then_the_manifest(tmp_path):
    writer, ids, calls = ArtifactDir(tmp_path / "k" / "s", ".png"), ["1", "2", "3"], []
    assert fill(writer, ids, {"settings": "a"}, lambda m: items_of(m, calls), constant, {"kind": "k"}) == 3
    assert writer.manifest()["ids"] == ids and writer.manifest()["kind"] == "k"
    assert writer.read_png("2").tolist() == constant(2).tolist()
    writer.path("2").unlink()
    calls.clear()
    assert fill(writer, ids, {"settings": "a"}, lambda m: items_of(m, calls), constant, {"kind": "k"}) == 1
    assert calls == ["2"]
    calls.clear()  # another producer: every file is redone
    assert fill(writer, ids, {"settings": "b"}, lambda m: items_of(m, calls), constant, {"kind": "k"}) == 3
    assert writer.manifest()["producer"] == {"settings": "b"}


def test_finish_refuses_a_folder_with_a_missing_file(tmp_path):
    writer = ArtifactDir(tmp_path / "k" / "s", ".png")
    writer.write_png("1", constant(1))
    with pytest.raises(RuntimeError, match=r"1 images were not written, e.g. \['2'\]"):
        finish(writer, ["1", "2"], kind="k")
    assert writer.manifest() is None
