"""Pixel pairs (IRN PathIndex), pair labels and boundary affinities
(jiwoon-ahn/irn@a2ece00:misc/indexing.py)."""
from collections import Counter

import numpy as np
import pytest
import torch

from wsss.ops.pairs import (PairIndex, affinity_from_boundary, downsample_labels, grid_size,
                            half_disc_offsets, offset_path, pair_labels)


def brute_force_pairs(height, width, radius):
    """Every undirected pair (p, q) with 0 < |p − q|² < r² whose source p is at least r − 1 from the
    left/right/bottom border, oriented so that q is below p or to its right on the same row."""
    f = radius - 1
    pairs = []
    for y in range(height - f):
        for x in range(f, width - f):
            for qy in range(height):
                for qx in range(width):
                    dy, dx = qy - y, qx - x
                    if 0 < dy * dy + dx * dx < radius * radius and (dy > 0 or (dy == 0 and dx > 0)):
                        pairs.append(((y, x), (qy, qx)))
    return pairs


def test_offsets_and_paths_match_irn():
    expected = [(0, dx) for dx in range(1, 5)] + [(1, dx) for dx in range(-4, 5)] + \
               [(2, dx) for dx in range(-4, 5)] + [(3, dx) for dx in range(-3, 4)] + [(4, dx) for dx in range(-2, 3)]
    assert half_disc_offsets(5) == expected                                       # A1
    assert len(half_disc_offsets(10)) == 152
    lengths = Counter(len(offset_path(dy, dx)) for dy, dx in expected)
    assert lengths == {2: 2, 3: 2, 4: 4, 5: 2, 6: 4, 7: 2, 8: 8, 10: 6, 11: 4}
    assert sorted(offset_path(1, 1)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert sorted(offset_path(2, 1)) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert offset_path(0, 4) == [(0, x) for x in range(5)]
    assert len(offset_path(4, 2)) == 11
    assert max(len(offset_path(dy, dx)) for dy, dx in half_disc_offsets(10)) == 22


def test_source_counts():
    assert PairIndex(56, 56, 5).num_pairs == 2496 * 34                              # A2
    assert PairIndex(128, 128, 10).source_shape == (119, 110)                       # 13 090 sources
    with pytest.raises(ValueError, match="too small"):
        PairIndex(8, 8, 5)


def test_pairs_are_the_brute_force_set():
    index = PairIndex(9, 13, 4)
    src, dst = index.src, index.dst
    ours = {(int(s), int(d)) for row_s, row_d in zip(src.expand_as(dst), dst) for s, d in zip(row_s, row_d)}
    width = 13
    brute = {(p[0] * width + p[1], q[0] * width + q[1]) for p, q in brute_force_pairs(9, 13, 4)}
    assert ours == brute and len(ours) == index.num_pairs


def test_pair_labels_on_the_psa_toy_map():
    labels = torch.zeros(24, 24, dtype=torch.long)
    labels[:, 12:] = 15
    labels[10:14] = 255
    out = pair_labels(labels, PairIndex(24, 24, 5))
    assert [int(m.sum()) for m in out] == [3244, 3404, 968]                         # A3


def test_pair_labels_match_a_brute_force_loop():
    rng = np.random.default_rng(0)
    labels = rng.choice([0, 0, 3, 7, 255], size=(2, 10, 12))
    index = PairIndex(10, 12, 4)
    out = pair_labels(torch.from_numpy(labels), index)
    assert out.bg_pos.shape == (2, len(index.offsets), 7 * 6)
    got = {name: set() for name in ("bg_pos", "fg_pos", "neg")}
    for name, mask in out._asdict().items():
        for b, p, s in torch.nonzero(mask).tolist():
            got[name].add((b, int(index.src[s]), int(index.dst[p, s])))
    want = {name: set() for name in got}
    for b in range(2):
        flat = labels[b].reshape(-1)
        for (py, px), (qy, qx) in brute_force_pairs(10, 12, 4):
            i, j = py * 12 + px, qy * 12 + qx
            if flat[i] == 255 or flat[j] == 255:
                continue
            name = "neg" if flat[i] != flat[j] else ("bg_pos" if flat[i] == 0 else "fg_pos")
            want[name].add((b, i, j))
    assert got == want
    assert all(want.values())


def test_affinity_from_boundary_single_edge_pixel():
    boundary = torch.zeros(10, 12)
    boundary[3, 6] = 0.7
    index = PairIndex(10, 12, 5)
    aff = affinity_from_boundary(boundary, index)
    on_path = torch.zeros_like(aff, dtype=torch.bool)
    for p, path in enumerate(index.paths):
        for s, source in enumerate(index.src.tolist()):
            y, x = divmod(source, 12)
            on_path[p, s] = any((y + py, x + px) == (3, 6) for py, px in path)
    assert on_path.any() and (~on_path).any()
    torch.testing.assert_close(aff[on_path], torch.full_like(aff[on_path], 0.3))   # A7
    assert (aff[~on_path] == 1).all()


def test_affinity_from_boundary_is_one_minus_path_max_and_differentiable():
    torch.manual_seed(0)
    boundary = torch.rand(2, 8, 11, requires_grad=True)
    index = PairIndex(8, 11, 3)
    aff = affinity_from_boundary(boundary, index)
    flat = boundary.detach().flatten(1)
    for p, ((dy, dx), path) in enumerate(zip(index.offsets, index.paths)):
        for s, source in enumerate(index.src.tolist()):
            y, x = divmod(source, 11)
            assert int(index.dst[p, s]) == (y + dy) * 11 + x + dx
            expected = 1 - torch.stack([flat[:, (y + py) * 11 + x + px] for py, px in path]).amax(0)
            torch.testing.assert_close(aff[:, p, s], expected)
    aff.sum().backward()
    assert boundary.grad.abs().sum() > 0


def test_downsample_labels_and_grid_size():
    labels = torch.arange(16, dtype=torch.uint8).view(1, 4, 4).repeat_interleave(4, 1).repeat_interleave(4, 2)
    small = downsample_labels(labels, (4, 4))
    assert small.dtype == torch.uint8
    np.testing.assert_array_equal(small[0].numpy(), np.arange(16).reshape(4, 4))
    assert grid_size(375, 500) == (94, 125)


@pytest.mark.parametrize("shape,size", [((512, 512), (128, 128)), ((37, 50), (10, 13)), ((9, 7), (3, 2))])
def test_downsample_labels_samples_like_pil_nearest(shape, size):
    # The thesis code resizes the affinity labels with PIL NEAREST (ResizeMask(crop // 4)): 4i + 2.
    from PIL import Image

    labels = np.random.default_rng(0).integers(0, 22, shape, dtype=np.uint8)
    pil = np.asarray(Image.fromarray(labels).resize(size[::-1], Image.NEAREST))
    ours = downsample_labels(torch.from_numpy(labels)[None], size)[0].numpy()
    np.testing.assert_array_equal(ours, pil)
    if shape == (512, 512):
        np.testing.assert_array_equal(ours, labels[2::4, 2::4])
