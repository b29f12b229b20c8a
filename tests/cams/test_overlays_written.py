"""The evaluate task's CAM overlays are PNGs in the run folder with any logger, the default CSV one (which
keeps no image) included."""
from __future__ import annotations

import numpy as np
from PIL import Image

from wsss.logging_utils import log_evaluation


class Split:
    ids = ("a", "b", "c")

    def load_image(self, image_id: str) -> np.ndarray:
        return np.full((8, 6, 3), 100, np.uint8)


def test_overlays_are_written_without_an_image_logger(tmp_path):
    cams = tmp_path / "cams" / "val"
    cams.mkdir(parents=True)
    hot = np.zeros((1, 8, 6), np.float32)
    hot[0, :4] = 1.0
    for image_id in ("a", "b"):  # c has no CAMs: no overlay
        np.savez(cams / f"{image_id}.npz", cams=hot, keys=np.array([3]))
    log_evaluation([], {"cams/val/miou": 0.5}, tmp_path, "cams", dataset=Split(), artifact_dir=cams,
                   num_overlays=3)
    written = sorted(p.name for p in (tmp_path / "overlays" / "cams" / "val").glob("*.png"))
    assert written == ["a.png", "b.png"]
    overlay = np.asarray(Image.open(tmp_path / "overlays" / "cams" / "val" / "a.png"))
    assert overlay.shape[0] == 8 and not np.array_equal(overlay[0, -1], overlay[7, -1])  # hot rows differ
