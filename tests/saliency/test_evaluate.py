"""Table-9 saliency scores against hand-made cases."""
import numpy as np
import pytest
import torch

from wsss.artifacts import ArtifactDir
from wsss.saliency.evaluate import (cam_cue_prediction, class_aware_confusions, evaluate_saliency, fg_bg_target,
                                    fgbg_confusions)

# ground truth: 0 bg, 1 = class 0, 2 = class 1, 255 ignore
MASK = torch.tensor([[0, 0, 1, 1],
                     [0, 255, 1, 1],
                     [0, 0, 2, 2],
                     [0, 0, 0, 2]])
SAL = torch.tensor([[0.9, 0.1, 0.8, 0.3],
                    [0.1, 0.9, 0.8, 0.8],
                    [0.1, 0.1, 0.8, 0.1],
                    [0.1, 0.1, 0.1, 0.8]])


def test_fg_bg_target_keeps_ignore():
    assert fg_bg_target(MASK).tolist() == [[0, 0, 1, 1], [0, 255, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]]


def test_fgbg_confusion_by_hand():
    conf = fgbg_confusions(SAL, MASK, torch.tensor([0.5]))[0]
    # bg GT: 8 valid pixels, salient among them (0,0) -> 1;
    # fg GT: 7 pixels, salient (0,2),(1,2),(1,3),(2,2),(3,3) = 5, missed (0,3),(2,3) = 2
    assert conf.tolist() == [[7, 1], [2, 5]]
    # threshold above every value: nothing salient
    assert fgbg_confusions(SAL, MASK, torch.tensor([0.95]))[0].tolist() == [[8, 0], [7, 0]]


def test_class_aware_confusion_by_hand():
    classes = torch.tensor([0, 1])
    conf = class_aware_confusions(SAL, MASK, classes, torch.tensor([0.5]), num_classes=2)[0]
    # class 0 (label 1): 4 pixels, 3 salient; class 1 (label 2): 3 pixels, 2 salient;
    # 1 bg pixel salient -> 0.5 to each class of the label set.
    expected = torch.tensor([[7.0, 0.5, 0.5],
                             [1.0, 3.0, 0.0],
                             [1.0, 0.0, 2.0]], dtype=torch.float64)
    assert torch.equal(conf, expected)


def test_class_aware_without_labels_keeps_stray_pixels_as_background():
    conf = class_aware_confusions(SAL, MASK, torch.tensor([], dtype=torch.long), torch.tensor([0.5]), 2)[0]
    assert conf[0].tolist() == [8.0, 0.0, 0.0]


def test_cam_cue_prediction_background_wins_ties():
    sal = torch.tensor([[0.8, 0.5, 0.1]])
    cams = torch.tensor([[[0.9, 0.5, 0.2]], [[0.1, 0.4, 0.95]]])
    keys = torch.tensor([3, 7])
    # bg scores 0.2, 0.5, 0.9: pixel 0 -> class 3, pixel 1 tie -> bg, pixel 2 -> class 7
    assert cam_cue_prediction(sal, cams, keys).tolist() == [[4, 0, 8]]


class _Split:
    """Minimal data set: ids, masks, labels, classes."""

    def __init__(self, masks, labels, num_classes):
        self.ids = [f"im{i}" for i in range(len(masks))]
        self._masks = dict(zip(self.ids, masks))
        self._labels = dict(zip(self.ids, labels))
        self.num_classes = num_classes
        self.split = "toy"

    def load_mask(self, i):
        return self._masks[i]

    def label(self, i):
        return self._labels[i]


@pytest.mark.parametrize("suffix", [".png", ".npz"])   # the saliency network's PNGs, C²AM-H's float maps
def test_evaluate_folder_against_brute_force(tmp_path, suffix):
    rng = np.random.default_rng(0)
    masks, labels, sals = [], [], []
    for _ in range(3):
        m = rng.integers(0, 3, size=(6, 7)).astype(np.uint8)
        m[0, 0] = 255
        masks.append(m)
        labels.append(np.array([1.0, 1.0], np.float32))
        sals.append(rng.integers(0, 256, size=(6, 7)).astype(np.uint8))
    folder = ArtifactDir(tmp_path / "sal", suffix)
    ds = _Split(masks, labels, 2)
    for i, s in zip(ds.ids, sals):
        if suffix == ".png":
            folder.write_png(i, s)
        else:
            folder.write_npz(i, saliency=s.astype(np.float32) / 255)
    t = [0.25, 0.5, 0.75]
    scores = evaluate_saliency(ds, folder, t)
    for k, th in enumerate(t):
        inter = np.zeros(2)
        union = np.zeros(2)
        for m, s in zip(masks, sals):
            valid = m != 255
            pred = (s.astype(np.float32) / 255 > th)[valid]
            gt = (m[valid] > 0)
            for c in (0, 1):
                inter[c] += np.sum((pred == c) & (gt == c))
                union[c] += np.sum((pred == c) | (gt == c))
        assert scores.fgbg_curve[k] == pytest.approx(np.mean(inter / union))
    assert scores.images == 3
    best_t, best = scores.fgbg_best
    assert best == max(scores.fgbg_curve) and best_t in t
