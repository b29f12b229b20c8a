"""Random walk: sparse operator (wsss.refine.random_walk.random_walk) vs the dense reference (IRN's T^256).

Same inputs for both (seeded random boundary map and CAMs on the stride-4 grid of a square image),
β = 10, exp_times = 8, radius 5. Each implementation runs in a fresh spawned process so that peak
memory is its own:

* CPU: peak RSS growth = ru_maxrss (peak resident set of the process) − RSS just before the call
  (torch imported, a 64×64 warm-up run done, inputs built). torch's allocator is invisible to
  tracemalloc; RSS sees it.
* CUDA: torch.cuda.max_memory_allocated() − memory_allocated() before the call (after a warm-up run).

Time: best of --repeats wall-clock runs (CUDA synchronised). The dense reference costs 8·2·N³ flops
(N = (size/4)²): a 512×512 image (N = 16 384) takes ~40 min on this 2-core CPU (~30 GFLOP/s), so the default sizes are
smaller and a dense time for 512 is extrapolated by N³ (printed as such); pass `--sizes 512` to measure it
(seconds on a GPU).

    python bench/bench_random_walk.py [--sizes 160 224] [--sparse-sizes 512] [--classes 3] [--device cpu]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

MIB = 2 ** 20


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def make_inputs(size: int, classes: int, seed: int = 0):
    import torch
    g = torch.Generator().manual_seed(seed)
    grid = size // 4
    # a smooth-ish boundary map: low everywhere, a few ridges, values in [0, 1]
    boundary = 0.3 * torch.rand(1, grid, grid, generator=g)
    boundary[:, :, grid // 3] = 0.95
    boundary[:, grid // 2, :] = 0.9
    cams = torch.rand(1, classes, grid, grid, generator=g)
    return cams, boundary


def run_one(impl: str, size: int, classes: int, device: str, repeats: int):
    import torch
    from wsss.refine.random_walk import random_walk, random_walk_dense
    fn = random_walk if impl == "sparse" else random_walk_dense
    cuda = device.startswith("cuda")
    fn(*(t.to(device) for t in make_inputs(64, classes)))   # warm-up: lazy library loading, thread pools
    cams, boundary = (t.to(device) for t in make_inputs(size, classes))
    if cuda:
        fn(cams, boundary)                         # warm-up at full size (kernels, cuSPARSE buffers)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(cams, boundary)
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return best, max(peak, 0), out.cpu()


def in_fresh_process(*args):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_one, args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 224], help="image sizes for both")
    parser.add_argument("--sparse-sizes", type=int, nargs="*", default=[512], help="image sizes, sparse only")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="sparse repeats (dense runs once on CPU)")
    args = parser.parse_args()
    import torch
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    print(f"device={device} threads={torch.get_num_threads()} classes={args.classes} beta=10 exp_times=8 radius=5")
    header = f"{'image':>7} {'nodes':>6} {'impl':>7} {'time s':>9} {'peak MiB':>9} {'speed-up':>9} {'mem ratio':>9} " \
             f"{'max|diff|':>10}"
    print(header)
    print("-" * len(header))
    last = None
    for size in args.sizes:
        nodes = (size // 4) ** 2
        dense_repeats = args.repeats if device.startswith("cuda") else 1
        t_d, m_d, out_d = in_fresh_process("dense", size, args.classes, device, dense_repeats)
        t_s, m_s, out_s = in_fresh_process("sparse", size, args.classes, device, args.repeats)
        diff = float((out_d - out_s).abs().max())
        print(f"{size:>7} {nodes:>6} {'dense':>7} {t_d:>9.3f} {m_d / MIB:>9.1f}")
        print(f"{size:>7} {nodes:>6} {'sparse':>7} {t_s:>9.3f} {m_s / MIB:>9.1f} {t_d / t_s:>8.1f}x "
              f"{m_d / max(m_s, 1):>8.1f}x {diff:>10.2e}")
        last = (nodes, t_d)
    for size in args.sparse_sizes:
        nodes = (size // 4) ** 2
        t_s, m_s, _ = in_fresh_process("sparse", size, args.classes, device, args.repeats)
        print(f"{size:>7} {nodes:>6} {'sparse':>7} {t_s:>9.3f} {m_s / MIB:>9.1f}")
        if last is not None:
            t_est = last[1] * (nodes / last[0]) ** 3
            m_est = 2 * nodes * nodes * 4      # T and T·T alive during a squaring, float32
            print(f"{size:>7} {nodes:>6} {'dense*':>7} {t_est:>9.1f} {m_est / MIB:>9.1f} {t_est / t_s:>8.1f}x "
                  f"{m_est / max(m_s, 1):>8.1f}x")
    print("dense* = extrapolated: time by N^3 from the largest measured size, memory = 2 N^2 float32 (T and T·T)")


if __name__ == "__main__":
    main()
