"""CAM → pseudo mask thresholding and the CRF label-map writer."""
from __future__ import annotations

import numpy as np
import pytest

from wsss.artifacts import ArtifactDir
from wsss.segmentation.crf_pool import LabelMapWriter, label_map
from wsss.segmentation.pseudo_masks import cam_mask, pseudo_masks_from_cams


def test_cam_mask_by_hand():
    keys = np.array([1, 4])  # class ids 1 and 4 -> mask values 2 and 5
    cams = np.array([[[0.9, 0.2, 0.25], [0.5, 0.5, 0.0]],
                     [[0.1, 0.8, 0.25], [0.6, 0.5, 0.0]]], np.float16)
    expected = np.array([[2, 5, 0],     # 0.25 = t: background wins ties with the threshold
                         [5, 2, 0]])    # equal CAMs: the first key
    np.testing.assert_array_equal(cam_mask(keys, cams, 0.25), expected)
    np.testing.assert_array_equal(cam_mask(np.zeros(0, np.int64), np.zeros((0, 2, 3)), 0.3), np.zeros((2, 3)))


def test_folder_is_written_with_a_manifest_and_resumes(tmp_path):
    cams = ArtifactDir(tmp_path / "cams", ".npz")
    for i in range(3):
        cams.write_npz(f"im{i}", keys=np.array([i]), cams=np.full((1, 4, 4), 0.2 * (i + 1), np.float16))
    out = tmp_path / "masks"
    info = pseudo_masks_from_cams(cams.root, out, ["im0", "im1", "im2"], 0.3, dataset="toy", split="train")
    assert info["count"] == 3 and info["kind"] == "pseudo_masks" and info["threshold"] == 0.3
    masks = ArtifactDir(out, ".png")
    assert masks.check({"dataset": "toy", "split": "train"})
    assert [int(masks.read_png(f"im{i}")[0, 0]) for i in range(3)] == [0, 2, 3]
    masks.path("im1").unlink()
    (out / "manifest.json").write_text("{}")
    info = pseudo_masks_from_cams(cams.root, out, ["im0", "im1", "im2"], 0.3, dataset="toy", split="train")
    assert info["count"] == 3 and int(masks.read_png("im1")[0, 0]) == 2
    with pytest.raises(ValueError, match="threshold=1.5"):
        pseudo_masks_from_cams(cams.root, out, ["im0"], 1.5)


def two_colour_problem(seed: int):
    rng = np.random.default_rng(seed)
    image = np.zeros((24, 32, 3), np.uint8)
    image[:, 16:] = 200
    probs = np.full((2, 24, 32), 0.5, np.float32)
    probs[0] = rng.uniform(0.3, 0.7, (24, 32))
    probs[1] = 1 - probs[0]
    return image, probs


def test_label_map_is_argmax_or_crf_argmax():
    image, probs = two_colour_problem(0)
    np.testing.assert_array_equal(label_map(probs), probs.argmax(0))
    refined = label_map(probs, image, iterations=5)
    assert refined.dtype == np.uint8 and set(np.unique(refined)) <= {0, 1}

    def label_changes(m):  # between 4-neighbours
        return int((m[:, 1:] != m[:, :-1]).sum() + (m[1:] != m[:-1]).sum())

    # the CRF's smoothness kernel removes the salt-and-pepper noise of near-0.5 probabilities (772 -> 0 changes)
    assert label_changes(probs.argmax(0)) > 700 and label_changes(refined) <= 70


def test_pooled_crf_writer_equals_inline(tmp_path):
    problems = {f"im{i}": two_colour_problem(i) for i in range(3)}
    for processes in (1, 2):
        folder = ArtifactDir(tmp_path / f"p{processes}", ".png")
        with LabelMapWriter(folder, crf_iterations=5, processes=processes) as writer:
            for image_id, (image, probs) in problems.items():
                writer.submit(image_id, probs, image)
        assert sorted(getattr(folder, "written", problems)) == sorted(problems)
    for image_id in problems:
        a = ArtifactDir(tmp_path / "p1", ".png").read_png(image_id)
        np.testing.assert_array_equal(a, ArtifactDir(tmp_path / "p2", ".png").read_png(image_id))
