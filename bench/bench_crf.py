"""Dense CRF over many images: `crf_labels_many` in the ordered spawn process pool vs inline (processes=1).

Same inputs for every run: --images synthetic scenes (coloured rectangles on noise) with label maps
that are the true partition shifted and salted, label CRF with the affinity-label settings (3 labels,
t=10, gt_prob 0.7, Gaussian 3/3, bilateral 50/5/10). Pool times include starting the workers (spawn), as
a stage would pay them; outputs are checked to be identical to the inline run.

    python bench/bench_crf.py [--images 16] [--size 320] [--processes 2 4]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from wsss.ops.crf import crf_labels_many
from wsss.ops.pool import pool_imap


def make_scene(size: int, rng: np.random.Generator):
    image = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
    truth = np.zeros((size, size), np.int64)
    for label in (1, 2):
        y, x = rng.integers(0, size // 2, 2)
        h, w = rng.integers(size // 4, size // 2, 2)
        image[y:y + h, x:x + w] = rng.integers(80, 256, 3, dtype=np.uint8)
        truth[y:y + h, x:x + w] = label
    labels = np.roll(truth, size // 20, axis=1)
    salt = rng.random(truth.shape) < 0.05
    labels[salt] = rng.integers(0, 3, int(salt.sum()))
    return image, labels, truth


def pool_startup_seconds(processes: int) -> float:
    """Wall time of a pool doing nothing: spawning the workers and importing wsss.ops.crf there."""
    start = time.perf_counter()
    list(pool_imap(abs, [(i, (i,)) for i in range(processes)], processes=processes, window=processes))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--processes", type=int, nargs="+", default=[2])
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    scenes = [make_scene(args.size, rng) for _ in range(args.images)]
    images, labels, truths = zip(*scenes)
    n_labels = [3] * len(images)

    def run(processes):
        start = time.perf_counter()
        out = crf_labels_many(images, labels, n_labels, iterations=args.iterations, processes=processes)
        return time.perf_counter() - start, out

    print(f"{args.images} images {args.size}x{args.size}, label CRF n=3 t={args.iterations}, "
          f"os.cpu_count()={os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    base_time, base = run(1)
    accuracy = np.mean([(o == t).mean() for o, t in zip(base, truths)])
    before = np.mean([(lab == t).mean() for lab, t in zip(labels, truths)])
    header = f"{'processes':>9} {'time s':>8} {'img/s':>7} {'speed-up':>9} {'identical':>9}"
    print(header)
    print("-" * len(header))
    print(f"{1:>9} {base_time:>8.2f} {args.images / base_time:>7.2f} {'1.00x':>9} {'-':>9}")
    for processes in args.processes:
        t, out = run(processes)
        same = all(np.array_equal(a, b) for a, b in zip(base, out))
        print(f"{processes:>9} {t:>8.2f} {args.images / t:>7.2f} {base_time / t:>8.2f}x {str(same):>9}"
              f"   (of which pool start-up ≈ {pool_startup_seconds(processes):.2f} s)")
    print(f"label accuracy vs the true partition: {before:.3f} before CRF, {accuracy:.3f} after")


if __name__ == "__main__":
    main()
