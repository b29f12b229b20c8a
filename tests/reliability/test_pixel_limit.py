"""The scan refuses an image above the pixel limit, naming the file (predict failed on it naming none)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from wsss.data.scan import Needs, image_problem, scan_split


class Images:
    num_classes = 1

    def __init__(self, root):
        self.root, self.ids = root, ["small", "huge"]

    def image_path(self, image_id):
        return self.root / f"{image_id}.png"


def test_an_image_above_the_pixel_limit_is_named_and_the_limit_is_configurable(tmp_path):
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(tmp_path / "huge.png")
    problems, _ = scan_split(Images(tmp_path), "train", Needs(), 1, max_pixels=100_000)
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'huge.png'}: 400x300 image")
    assert "+dataset.max_pixels=" in problems[0]
    assert image_problem(tmp_path / "huge.png", 120_000) == (None, (300, 400))
    assert image_problem(tmp_path / "huge.png")[0] is None  # the default limit is far above ordinary photos
