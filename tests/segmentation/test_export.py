"""VOC evaluation-server layout of an export."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from wsss.artifacts import ArtifactDir
from wsss.segmentation.export import archive_members, export_predictions, server_folder

IDS = ["2008_000001", "2008_000002"]


def predictions(tmp_path):
    out = ArtifactDir(tmp_path / "pred", ".png")
    for n, image_id in enumerate(IDS):
        out.write_png(image_id, np.full((5, 7), n + 3, np.uint8), palette=True)
    return out


@pytest.mark.parametrize("archive", ["tar.gz", "zip"])
def test_layout_and_archive(tmp_path, archive):
    preds = predictions(tmp_path)
    path = export_predictions(preds.root, IDS, tmp_path / "export", num_classes=20, archive=archive)
    folder = tmp_path / "export" / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls"
    assert server_folder() == folder.relative_to(tmp_path / "export")
    assert sorted(p.name for p in folder.iterdir()) == [f"{i}.png" for i in IDS]
    for image_id in IDS:
        img = Image.open(folder / f"{image_id}.png")
        assert img.mode == "P"
        np.testing.assert_array_equal(np.asarray(img), preds.read_png(image_id))
    assert path == tmp_path / "export" / f"comp6_test_cls.{archive}"
    assert archive_members(path) == [f"results/VOC2012/Segmentation/comp6_test_cls/{i}.png" for i in IDS]


def test_incomplete_or_out_of_range_predictions_are_refused(tmp_path):
    preds = predictions(tmp_path)
    with pytest.raises(FileNotFoundError, match="1 of 3 predictions are missing"):
        export_predictions(preds.root, [*IDS, "2008_000003"], tmp_path / "export", num_classes=20)
    with pytest.raises(ValueError, match="expected 0..3"):
        export_predictions(preds.root, IDS, tmp_path / "export", num_classes=3)
    with pytest.raises(ValueError, match="archive='rar'"):
        export_predictions(preds.root, IDS, tmp_path / "export", num_classes=20, archive="rar")
