"""`stage.inference.storage`: the float type of the CAM / random-walk maps in the npz artifacts. The thesis
code stores float32; float16 moves a [0, 1] value by up to 2.4e-4, enough to cross a threshold of a later step."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wsss.cams.storage import storage_dtype
from wsss.stage_schema import stage_settings
from wsss.stages.cam import CAMStage

# 0.29995 is below the 0.3 of a random-walk threshold; its nearest float16 is 0.30005, above it.
BELOW = 0.29995


class Recorder:
    def __init__(self):
        self.written = {}

    def write_npz(self, image_id, **arrays):
        self.written[image_id] = arrays


def fake_cam_stage(storage: str | None) -> SimpleNamespace:
    """What CAMStage.predict_step reads: a raw-CAM function giving one class a map with max 1 and BELOW."""
    raw = torch.ones(1, 2, 16, 16)
    raw[:, 1, 3, 4] = BELOW
    inference = {"scales": [1.0], "flip": False, "upsample_stride": 16}
    if storage is not None:
        inference["storage"] = storage
    datamodule = SimpleNamespace(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    return SimpleNamespace(scfg=stage_settings("classifier", {"inference": inference}),
                           trainer=SimpleNamespace(datamodule=datamodule), device=torch.device("cpu"),
                           dtype=torch.float32, writer=Recorder(),
                           raw_cams=lambda x: raw.expand(x.shape[0], -1, -1, -1))


def predicted(storage):
    stage = fake_cam_stage(storage)
    batch = {"image": torch.zeros(1, 3, 16, 16), "id": ["a"], "label": torch.tensor([[0.0, 1.0]])}
    CAMStage.predict_step(stage, batch, 0)
    return stage.writer.written["a"]


def test_float32_storage_keeps_a_value_below_the_threshold():
    assert float(np.float16(BELOW)) > 0.3 > BELOW    # why the switch exists
    stored = predicted("float32")
    assert stored["cams"].dtype == np.float32 and stored["cams_stride4"].dtype == np.float32
    # normalised by its max 1 (+1e-5): the value, independently of the code's float path
    assert stored["cams"][0, 3, 4] == pytest.approx(BELOW / (1 + 1e-5), abs=1e-7)
    assert stored["cams"][0, 3, 4] < 0.3


def test_float16_is_the_default_and_rounds_across_the_threshold():
    stored = predicted(None)
    assert stored["cams"].dtype == np.float16 and float(stored["cams"][0, 3, 4]) > 0.3


def test_unknown_storage_is_named():
    with pytest.raises(ValueError, match="stage.inference.storage='float64'"):
        storage_dtype("float64")
