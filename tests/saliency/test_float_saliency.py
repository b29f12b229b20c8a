"""C²AM-H saliency is stored as a float map and the pseudo saliency thresholds that float map, as the thesis
code: lucasdavid/PNOC@f250e0d:scripts/ccam/inference.py:103-105 `np.save`s the float `hr_cam`, and
scripts/ccam/inference_crf.py:58-62 thresholds it. A uint8 PNG rounds 0.2005 to 51 / 255 = 0.2, background at
δ = 0.2; the float map keeps it foreground."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wsss.artifacts import ArtifactDir
from wsss.saliency.maps import open_saliency, read_saliency
from wsss.saliency.pseudo import pseudo_saliency_map
from wsss.saliency.tasks import pseudo_saliency
from wsss.stage_schema import stage_settings
from wsss.stages.ccam import CCAMStage

JUST_ABOVE = 0.2005   # salient at δ = 0.2 upstream
AT = (3, 4)


class Recorder:
    def __init__(self):
        self.written = {}

    def write_npz(self, image_id, **arrays):
        self.written[image_id] = arrays


def predicted(storage: str | None) -> np.ndarray:
    """CCAMStage.predict_step on a net whose foreground logits peak at 1 and hold JUST_ABOVE·(1 + 1e-5) at AT:
    after ÷ (max + 1e-5) the map holds JUST_ABOVE there."""
    logits = torch.zeros(1, 1, 16, 16)
    logits[0, 0, 0, 0] = 1.0
    logits[0, 0, AT[0], AT[1]] = JUST_ABOVE * (1 + 1e-5)
    inference = {"scales": [1.0], "flip": False, **({"storage": storage} if storage else {})}
    stage = SimpleNamespace(scfg=stage_settings("ccam", {"inference": inference}),
                            trainer=SimpleNamespace(datamodule=SimpleNamespace(mean=(0.5,) * 3, std=(0.5,) * 3)),
                            device=torch.device("cpu"), dtype=torch.float32, writer=Recorder(),
                            saliency_logits=lambda x: logits.expand(x.shape[0], -1, -1, -1))
    CCAMStage.predict_step(stage, {"image": torch.zeros(1, 3, 16, 16), "id": ["a"]}, 0)
    return stage.writer.written["a"]["saliency"]


def test_a_uint8_png_would_make_the_value_background():
    assert round(255 * JUST_ABOVE) / 255 <= 0.2 < JUST_ABOVE    # why the map is stored as floats


@pytest.mark.parametrize("storage, dtype", [("float32", np.float32), (None, np.float16)])
def test_the_stored_float_map_keeps_the_value_salient(storage, dtype):
    saliency = predicted(storage)
    assert saliency.dtype == dtype and saliency.shape == (16, 16)
    assert saliency[AT] == pytest.approx(JUST_ABOVE, abs=1e-4) and saliency[AT] > 0.2
    image = np.zeros((16, 16, 3), np.uint8)
    pseudo = pseudo_saliency_map(image, saliency.astype(np.float32), threshold=0.2, crf_iterations=0)
    assert pseudo[AT] == 255 and pseudo[1, 1] == 0


def test_a_uint8_map_is_refused():
    with pytest.raises(ValueError, match="expected a float map"):
        pseudo_saliency_map(np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 51, np.uint8))


class Split:
    ids = ["a", "b"]

    def load_image(self, image_id):
        return np.zeros((8, 8, 3), np.uint8)

    def label(self, image_id):
        return np.array([1.0, 0.0])


def test_the_pseudo_saliency_task_thresholds_the_float_maps(tmp_path):
    """The task reads this run's `saliency/<split>/*.npz` and thresholds the floats (0.2005 fg, 0.2 bg)."""
    maps = ArtifactDir(tmp_path / "saliency" / "train", ".npz")
    for image_id in Split.ids:
        saliency = np.zeros((8, 8), np.float32)
        saliency[AT] = JUST_ABOVE
        saliency[5, 5] = 0.2
        maps.write_npz(image_id, saliency=saliency)
    maps.write_manifest(ids=Split.ids, stage="ccam", kind="saliency", dataset="synthetic", split="train")
    plain = {"stage": {"name": "ccam", "pseudo": {"threshold": 0.2, "crf": {"t": 0}, "processes": 1}},
             "dataset": {"name": "synthetic"}, "num_workers": 0}
    ctx = SimpleNamespace(plain=plain, run_dir=tmp_path, weights=None, predict_splits=lambda: ["train"],
                          dm=SimpleNamespace(split=lambda split: Split()),
                          trainer=SimpleNamespace(is_global_zero=True, strategy=SimpleNamespace(barrier=lambda: None)))
    pseudo_saliency(ctx)
    out = ArtifactDir(tmp_path / "pseudo_saliency" / "train", ".png")
    for image_id in Split.ids:
        pseudo = out.read_png(image_id)
        assert pseudo[AT] == 255 and pseudo[5, 5] == 0 and pseudo.sum() == 255


def test_both_folder_types_read_back_in_unit_range(tmp_path):
    """The affinity stage, the evaluation and the figure read C²AM-H's npz maps and the saliency network's PNGs."""
    values = np.array([[0.0, 0.2005], [0.5, 1.0]], np.float32)
    npz = ArtifactDir(tmp_path / "ccam" / "train", ".npz")
    npz.write_npz("a", saliency=values)
    npz.write_manifest(ids=["a"], dataset="synthetic")
    png = ArtifactDir(tmp_path / "poolnet" / "train", ".png")
    png.write_png("a", np.array([[0, 51], [128, 255]], np.uint8))
    png.write_manifest(ids=["a"], dataset="synthetic")
    got_npz = read_saliency(open_saliency(tmp_path / "ccam", "train", ["a"], "synthetic"), "a")
    got_png = read_saliency(open_saliency(tmp_path / "poolnet", "train", ["a"], "synthetic"), "a")
    assert got_npz.dtype == got_png.dtype == np.float32
    assert np.array_equal(got_npz, values)
    assert np.allclose(got_png, [[0.0, 0.2], [128 / 255, 1.0]])


def test_an_npz_without_a_saliency_array_is_named(tmp_path):
    cams = ArtifactDir(tmp_path / "cams" / "train", ".npz")
    cams.write_npz("a", cams=np.zeros((1, 2, 2), np.float32), keys=np.zeros(1, np.int64))
    with pytest.raises(ValueError, match=r"a\.npz: no 'saliency' array \(it holds \['cams', 'keys'\]\)"):
        read_saliency(cams, "a")


def test_the_pngs_of_an_earlier_ccam_run_are_removed_when_its_npz_maps_are_written(tmp_path):
    """A run folder from when C²AM-H stored PNGs: its predict writes .npz maps and leaves no PNG behind."""
    producer = {"checkpoint": "untrained", "settings": "s"}
    old = ArtifactDir(tmp_path / "saliency" / "train", ".png")
    old.begin(producer)
    old.write_png("a", np.zeros((2, 2), np.uint8))
    old.write_manifest(ids=["a"], dataset="synthetic")
    new = ArtifactDir(old.root, ".npz")
    assert new.begin(producer) is True
    assert not any(new.root.glob("*.png")) and new.missing(["a"]) == ["a"]
