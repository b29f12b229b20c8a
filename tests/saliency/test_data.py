"""Hints follow the image through the C²AM-H augmentation."""
import numpy as np
import torch

from wsss.artifacts import ArtifactDir
from wsss.saliency.data import HintSplit, ccam_train_transform, load_hint

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class _Split:
    def __init__(self, images):
        self.images = images
        self.ids = list(images)

    def load_image(self, i):
        return self.images[i]

    def label(self, i):
        return np.array([1.0, 0.0], np.float32)


def _smooth_hint(h, w, seed):
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.5, 3, size=2)
    return (0.5 + 0.5 * np.sin(a * 3 * xx + 1) * np.cos(b * 2 * yy)).astype(np.float32)


def test_load_hint_is_max_over_classes(tmp_path):
    cams = ArtifactDir(tmp_path / "cams", ".npz")
    maps = np.random.default_rng(0).random((3, 5, 6)).astype(np.float16)
    cams.write_npz("a", keys=np.array([0, 2, 4]), cams=maps)
    cams.write_npz("b", keys=np.zeros(0, np.int64), cams=np.zeros((0, 5, 6), np.float16))
    assert np.array_equal(load_hint(cams, "a", (5, 6)), maps.astype(np.float32).max(0))
    assert not load_hint(cams, "b", (5, 6)).any()


def test_hint_goes_through_the_same_resize_flip_crop_as_the_image(tmp_path):
    """The image's red channel encodes the hint; after any augmentation they must still agree."""
    h, w, crop = 40, 52, 32
    hint = _smooth_hint(h, w, 0)
    image = np.stack([np.round(hint * 255), np.zeros_like(hint), np.full_like(hint, 100)], -1).astype(np.uint8)
    # the hint comes from a CAM artifact: two class maps whose max is `hint`
    cams = ArtifactDir(tmp_path / "cams", ".npz")
    cams.write_npz("x", keys=np.array([0, 1]), cams=np.stack([hint, hint * 0.5]).astype(np.float32))
    ds = HintSplit(_Split({"x": image}), cams, ccam_train_transform(crop, MEAN, STD, resize_factor=1.4), ["x"])
    seen_flip = {True: 0, False: 0}
    for _ in range(30):
        item = ds[0]
        red = item["image"][0] * STD[0] + MEAN[0]  # back to [0, 1]
        assert item["hint"].shape == (crop, crop)
        # the crop is random: the hint is not trivially the top-left crop
        assert torch.allclose(red, item["hint"], atol=2.5 / 255), "hint and image were transformed differently"
        # is it mirrored? compare the crop's horizontal gradient sign with the original's at that scale
        side = int(round(1.4 * crop))
        resized = torch.nn.functional.interpolate(torch.from_numpy(hint)[None, None], size=(side, side),
                                                  mode="bilinear", align_corners=False)[0, 0]
        flipped = None
        for mirrored in (False, True):
            ref = resized.flip(-1) if mirrored else resized
            for y in range(side - crop + 1):
                for x in range(side - crop + 1):
                    if torch.allclose(ref[y:y + crop, x:x + crop], item["hint"], atol=2e-2):
                        flipped = mirrored
                        break
                if flipped is not None:
                    break
            if flipped is not None:
                break
        assert flipped is not None, "the hint is not a crop of the (possibly mirrored) resized hint"
        seen_flip[flipped] += 1
    assert seen_flip[True] > 0 and seen_flip[False] > 0
