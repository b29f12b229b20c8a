"""Random walk: IRN reference values, sparse == dense == brute force, batching, post-processing, pseudo masks
(jiwoon-ahn/irn@a2ece00:misc/indexing.py)."""
import numpy as np
import pytest
import torch

from wsss.ops.pairs import offset_path
from wsss.refine.random_walk import (dense_affinity_matrix, propagate, propagate_dense, pseudo_mask,
                                     random_walk, random_walk_dense, transition_operator,
                                     upsample_and_normalise)


def brute_force_affinity(boundary: torch.Tensor, beta: float, radius: int) -> torch.Tensor:
    """A_ij = (1 − max B on the path)^β for every in-grid pair with 0 < d² < r², unit diagonal, by loops."""
    h, w = boundary.shape
    a = torch.eye(h * w, dtype=torch.float64)
    for y in range(h):
        for x in range(w):
            for qy in range(y, min(h, y + radius)):
                for qx in range(max(0, x - radius + 1), min(w, x + radius)):
                    dy, dx = qy - y, qx - x
                    if not (0 < dy * dy + dx * dx < radius * radius) or (dy == 0 and dx < 0):
                        continue
                    peak = max(float(boundary[y + py, x + px]) for py, px in offset_path(dy, dx))
                    a[y * w + x, qy * w + qx] = a[qy * w + qx, y * w + x] = (1 - peak) ** beta
    return a


def test_dense_matrix_matches_brute_force():
    torch.manual_seed(0)
    boundary = torch.rand(6, 9, dtype=torch.float64)
    torch.testing.assert_close(dense_affinity_matrix(boundary, beta=3.0, radius=4),
                               brute_force_affinity(boundary, 3.0, 4))


def test_transition_operator_is_row_stochastic_and_block_diagonal():
    torch.manual_seed(1)
    boundary = torch.rand(2, 5, 7)
    sparse = transition_operator(boundary, beta=10.0, radius=5)
    with torch.sparse.check_sparse_tensor_invariants():
        torch.sparse_csr_tensor(sparse.crow_indices(), sparse.col_indices(), sparse.values(), sparse.shape)
    crow, col = sparse.crow_indices(), sparse.col_indices()
    assert all(bool((col[a:b].diff() > 0).all()) for a, b in zip(crow[:-1].tolist(), crow[1:].tolist()))
    m = sparse.to_dense()
    torch.testing.assert_close(m.sum(1), torch.ones(70))                              # A8 (transposed)
    assert (m[:35, 35:] == 0).all() and (m[35:, :35] == 0).all()
    dense = dense_affinity_matrix(boundary[1], 10.0, 5)
    torch.testing.assert_close(m[35:, 35:], dense / dense.sum(1, keepdim=True))


def test_constant_seeds_are_a_fixed_point():
    out = random_walk(torch.ones(1, 2, 12, 16), torch.zeros(1, 12, 16))
    torch.testing.assert_close(out, torch.ones_like(out), atol=1e-5, rtol=0)          # A9


def test_wall_blocks_propagation():
    boundary = torch.zeros(1, 12, 16)
    boundary[..., 8] = 1
    seeds = torch.zeros(1, 1, 12, 16)
    seeds[0, 0, 5, 3] = 1
    out = random_walk(seeds, boundary)[0, 0]
    assert float(out[:, 8:].abs().sum()) == 0.0                                        # A10
    assert float(out[:, :8].sum()) == pytest.approx(1.4826, abs=1e-3)


def test_irn_reference_value():
    boundary = torch.full((1, 6, 8), 0.2)
    boundary[..., 4] = 0.9
    seeds = torch.zeros(1, 1, 6, 8)
    seeds[0, 0, 2, 1] = 1
    out = random_walk(seeds, boundary)[0, 0]                                           # A11
    assert float(out.sum()) == pytest.approx(0.843518, rel=1e-4)
    assert float(out[2, 1]) == pytest.approx(0.035147, rel=1e-4)
    assert float(out[2, 6]) == pytest.approx(3.05e-9, rel=1e-2)
    assert float(out[:, 4:].sum()) < 1e-6


def test_sparse_equals_dense_float32_and_float64():
    torch.manual_seed(2)
    boundary = torch.rand(2, 7, 9)
    cams = torch.rand(2, 3, 7, 9)
    fast = random_walk(cams, boundary, beta=10.0, exp_times=8)
    dense = random_walk_dense(cams, boundary, beta=10.0, exp_times=8)
    assert fast.dtype == torch.float32 and fast.shape == (2, 3, 7, 9)
    assert float((fast - dense).abs().max()) <= 1e-4
    fast64 = propagate(cams.double(), boundary.double(), beta=4.0, exp_times=5)
    power = torch.stack([torch.linalg.matrix_power(
        (lambda a: a / a.sum(0, keepdim=True))(brute_force_affinity(b.double(), 4.0, 5)), 32) for b in boundary])
    reference = torch.einsum("bcn,bnm->bcm", cams.double().flatten(2), power).view_as(fast64)   # A12
    torch.testing.assert_close(fast64, reference, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(propagate_dense(cams.double(), boundary.double(), 4.0, 5), reference,
                               rtol=1e-5, atol=1e-12)


def test_padding_with_boundary_one_isolates_the_padding():
    torch.manual_seed(3)
    boundary = torch.rand(1, 6, 7)
    cams = torch.rand(1, 2, 6, 7)
    alone = random_walk(cams, boundary, exp_times=4)
    padded_b = torch.ones(2, 9, 10)
    padded_c = torch.zeros(2, 2, 9, 10)
    padded_b[0, :6, :7], padded_c[0, :, :6, :7] = boundary[0], cams[0]
    padded_b[1], padded_c[1] = torch.rand(9, 10), torch.rand(2, 9, 10)
    batched = random_walk(padded_c, padded_b, exp_times=4)
    torch.testing.assert_close(batched[0, :, :6, :7], alone[0])
    assert float(batched[0, :, 6:].abs().max()) == 0.0 and float(batched[0, :, :, 7:].abs().max()) == 0.0
    torch.testing.assert_close(batched[1:], random_walk(padded_c[1:], padded_b[1:], exp_times=4))


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="same grid"):
        random_walk(torch.zeros(1, 2, 6, 7), torch.zeros(1, 6, 8))


def test_upsample_and_normalise_uses_the_global_max():
    rw = torch.zeros(1, 2, 4, 5)
    rw[0, 0, 1, 1] = 4.0
    rw[0, 1, 2, 3] = 2.0
    out = upsample_and_normalise(rw, size=(15, 18))
    assert out.shape == (1, 2, 15, 18)
    assert float(out.max()) == pytest.approx(1.0)
    assert float(out[0, 1].max()) == pytest.approx(0.5)                                 # A13: not per class


def test_pseudo_mask_threshold_ties_and_keys():
    image = np.zeros((2, 3, 3), np.uint8)
    rw = np.array([[[0.3, 0.5, 0.1], [0.0, 0.2, 0.9]],
                   [[0.1, 0.6, 0.2], [0.0, 0.31, 0.2]]], np.float32)
    mask = pseudo_mask(rw, np.array([4, 11]), image, bg_threshold=0.3, crf_iterations=0)
    np.testing.assert_array_equal(mask, [[0, 12, 0], [0, 12, 5]])
    assert mask.dtype == np.uint8
    saliency = np.array([[255, 255, 0], [0, 204, 255]], np.uint8)   # bg score 1 − s: 0, 0, 1, 1, 0.2, 0
    mask = pseudo_mask(rw, np.array([4, 11]), image, saliency=saliency, crf_iterations=0)
    np.testing.assert_array_equal(mask, [[5, 12, 0], [0, 12, 5]])
    np.testing.assert_array_equal(pseudo_mask(np.zeros((0, 2, 3)), [], image), 0)


def test_pseudo_mask_with_crf_follows_the_image():
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, 30:] = 220
    rw = np.zeros((1, 40, 60), np.float32)
    rw[:, :, 24:] = 0.8                                   # 6 px of leakage onto the dark side
    mask = pseudo_mask(rw, np.array([0]), image, bg_threshold=0.3, crf_iterations=10, gt_prob=0.7)
    expected = np.zeros((40, 60), np.uint8)
    expected[:, 30:] = 1
    assert (mask == expected).mean() >= 0.99


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu():
    torch.manual_seed(4)
    boundary, cams = torch.rand(2, 20, 24), torch.rand(2, 3, 20, 24)
    cpu = random_walk(cams, boundary)
    gpu = random_walk(cams.cuda(), boundary.cuda())
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-6)


def test_beta_zero_and_autocast_keep_the_reference_result():
    torch.manual_seed(5)
    boundary, cams = torch.rand(1, 6, 8), torch.rand(1, 2, 6, 8)
    torch.testing.assert_close(random_walk(cams, boundary, beta=0.0, exp_times=3),
                               random_walk_dense(cams, boundary, beta=0.0, exp_times=3), rtol=1e-4, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = random_walk(cams, boundary)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, random_walk(cams, boundary))
