"""Affinity labels from CAMs (+ saliency) and dense CRF
(lucasdavid/PNOC@f250e0d:scripts/rw/make_affinity_labels.py)."""
import numpy as np
import pytest

from wsss.refine.affinity_labels import affinity_labels, combine_labels, threshold_argmax, unit_saliency


def test_combine_rule_of_irn():
    fg_conf = np.array([0, 15, 0])
    bg_conf = np.array([0, 15, 15])
    np.testing.assert_array_equal(combine_labels(fg_conf, bg_conf == 0), [0, 15, 255])   # A5


def test_threshold_argmax_ties_go_to_background():
    cams = np.array([[[0.4, 0.5, 0.1]], [[0.2, 0.6, 0.41]]], np.float32)
    np.testing.assert_array_equal(threshold_argmax(cams, 0.4), [[0, 2, 2]])
    np.testing.assert_array_equal(threshold_argmax(np.zeros((0, 1, 3)), 0.4), [[0, 0, 0]])


def test_rules_with_saliency_without_crf():
    image = np.zeros((2, 4, 3), np.uint8)
    cams = np.array([[[0.9, 0.9, 0.2, 0.05], [0.5, 0.0, 0.0, 0.0]],
                     [[0.0, 0.0, 0.0, 0.00], [0.7, 0.3, 0.0, 0.0]]], np.float32)
    saliency = np.array([[200, 10, 200, 0], [255, 255, 26, 25]], np.uint8)   # 25/255 ≤ 0.10 < 26/255
    labels = affinity_labels(cams, np.array([2, 6]), image, saliency=saliency, crf_iterations=0)
    # salient & cam > 0.4 → class; not salient → bg whatever the cam; salient & no class → unsure
    np.testing.assert_array_equal(labels, [[3, 0, 255, 0], [7, 255, 255, 0]])
    assert labels.dtype == np.uint8
    as_float = affinity_labels(cams, np.array([2, 6]), image, saliency=saliency / 255.0, crf_iterations=0)
    np.testing.assert_array_equal(as_float, labels)


def test_rules_without_saliency_without_crf():
    image = np.zeros((1, 5, 3), np.uint8)
    cams = np.array([[[0.9, 0.41, 0.4, 0.1, 0.0]]], np.float32)
    labels = affinity_labels(cams, np.array([14]), image, fg_threshold=0.40, bg_threshold=0.10, crf_iterations=0)
    np.testing.assert_array_equal(labels, [[15, 15, 255, 0, 0]])


def scene():
    """A bright square object on a dark background; the CAM covers its centre and leaks to the right."""
    image = np.full((48, 64, 3), 30, np.uint8)
    image[12:36, 16:40] = (230, 200, 40)
    truth = np.zeros((48, 64), np.uint8)
    truth[12:36, 16:40] = 4
    cams = np.zeros((1, 48, 64), np.float32)
    cams[0, 16:32, 20:46] = 0.9
    cams[0, 10:38, 14:50] = np.maximum(cams[0, 10:38, 14:50], 0.25)
    return image, truth, cams


def test_saliency_and_crf_recover_the_object():
    image, truth, cams = scene()
    saliency = np.zeros((48, 64), np.uint8)
    saliency[10:38, 14:42] = 255                            # saliency slightly larger than the object
    labels = affinity_labels(cams, np.array([3]), image, saliency=saliency)
    assert set(np.unique(labels)) <= {0, 4, 255}
    assert (labels[truth == 0] != 4).all()                  # no class on the background
    assert (labels[:, 44:] == 0).all()                      # the CAM's leak outside the salient area is bg
    assert (labels[truth == 4] == 4).mean() > 0.9           # CRF grows the CAM core to the object
    assert (labels[truth == 0] == 0).mean() > 0.95


def test_without_saliency_weakly_activated_objects_are_unsure():
    image, truth, cams = scene()
    image[38:46, 48:62] = (40, 200, 230)                  # a second object, only weakly activated
    cams[0, 38:46, 48:62] = 0.25
    labels = affinity_labels(cams, np.array([3]), image, fg_threshold=0.4, bg_threshold=0.1)
    assert (labels[truth == 4] == 4).mean() > 0.9
    assert (labels[0:8] == 0).all()                         # far from every activation: background
    assert (labels[39:45, 49:61] == 255).all()              # δ_bg < CAM ≤ δ_fg: unsure
    assert (labels[truth == 0] != 4).all()


def test_bad_inputs():
    image = np.zeros((2, 3, 3), np.uint8)
    with pytest.raises(ValueError, match="class ids"):
        affinity_labels(np.zeros((2, 2, 3)), np.array([1]), image)
    with pytest.raises(ValueError, match="saliency"):
        affinity_labels(np.zeros((1, 2, 3)), np.array([1]), image, saliency=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        unit_saliency(np.full((2, 3), 2.0), (2, 3))
