"""CAM evaluation (the background-threshold sweep) against its core call, the confusion bincount alone.

ours:    `wsss.cams.evaluate.sweep` over a VOC-layout folder: read each image's CAM npz and its mask PNG,
         threshold at the 16 background thresholds, one bincount per image, mIoU curve.
ceiling: the counting alone on the same CAMs and masks already in memory: `threshold_confusions` (one bincount
         of the pixels, what the sweep runs), and the masked bincount of the 16 thresholded maps
         (`confusion_matrices`, what the sweep ran before it).
The mIoU curves must agree exactly. VOC-sized images (500 x 375), two present classes, float16 CAMs as stored.

The first two rows read the files in the timed process itself (CPU seconds, no loader worker): the decoding
of each npz and PNG counts against ours. The third row's ceiling reads each file once too, in a bare loop (the
same read calls, then the counting): what the sweep adds beyond the reading it cannot avoid. The last row
times the sweep as the evaluation tasks run it, with `--workers` loader processes (the config's
`num_workers`, 2 by default) decoding while the main process counts: wall seconds an image at steady state,
(t(all images) - t(half)) / half, so the workers' start-up, paid once a sweep, is left out; against the
counting alone, also wall seconds. Run it on an otherwise idle machine: wall time counts every other job.

    python bench/bench_evaluate.py
    python bench/bench_evaluate.py --images 32 --repeats 5 --workers 2
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import write_voc  # noqa: E402
from common import check_equal, interleaved, machine, now  # noqa: E402

GOAL = "≥ 0.9 (within 10 %)"


def write_cams(split, out: Path, seed: int = 0) -> None:
    """Stored CAMs of each image's present classes (smooth, in [0, 1]), as the predict task writes them."""
    from wsss.artifacts import ArtifactDir

    rng = np.random.default_rng(seed)
    writer = ArtifactDir(out, ".npz")
    out.mkdir(parents=True, exist_ok=True)
    for image_id in split.ids:
        h, w = split.load_mask(image_id).shape
        keys = np.flatnonzero(split.label(image_id))
        grid = torch.from_numpy(rng.random((1, len(keys), h // 16, w // 16)).astype(np.float32))
        cams = torch.nn.functional.interpolate(grid, size=(h, w), mode="bilinear")[0].numpy()
        writer.write_npz(image_id, keys=keys.astype("int64"), cams=cams.astype(np.float16))


def ours(split, cam_dir: Path) -> tuple[float, list[float]]:
    from wsss.cams.evaluate import sweep

    t = now()
    result = sweep(split, cam_dir)
    return (now() - t) / len(split.ids), result.miou


def first(split, n: int):
    """The split with only its first `n` images."""
    part = copy.copy(split)
    part.ids = split.ids[:n]
    return part


def ours_as_run(split, cam_dir: Path, workers: int) -> tuple[float, list[float]]:
    """Wall seconds an image of the sweep with `workers` loader processes, at steady state."""
    from wsss.cams.evaluate import sweep

    half = first(split, len(split.ids) // 2)
    t = time.perf_counter()
    sweep(half, cam_dir, num_workers=workers)
    t_half = time.perf_counter() - t
    t = time.perf_counter()
    result = sweep(split, cam_dir, num_workers=workers)
    t_all = time.perf_counter() - t
    return (t_all - t_half) / (len(split.ids) - len(half.ids)), result.miou


def read(split, cams, image_id: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's CAMs, keys and mask as stored (float16, uint8), read with the calls the sweep makes."""
    from wsss.data.ground_truth import ground_truth_mask

    z = cams.read_npz(image_id)
    mask = torch.from_numpy(ground_truth_mask(split, image_id))
    return torch.from_numpy(z["cams"]), torch.from_numpy(z["keys"]), mask


def in_memory(split, cam_dir: Path) -> list[tuple]:
    """Each image's CAMs, keys, mask and thresholded maps (T, H, W)."""
    from wsss.artifacts import ArtifactDir
    from wsss.cams.evaluate import default_thresholds, threshold_predictions

    ts, cams, out = torch.tensor(default_thresholds()), ArtifactDir(cam_dir, ".npz"), []
    for image_id in split.ids:
        maps, keys, mask = read(split, cams, image_id)
        out.append((maps, keys, mask, threshold_predictions(maps, keys, ts, tuple(mask.shape))))
    return out


def counting(pairs, num_labels: int, clock=now) -> tuple[float, list[float]]:
    from wsss.cams.evaluate import default_thresholds, threshold_confusions
    from wsss.metrics.segmentation import iou_per_class

    ts = torch.tensor(default_thresholds())
    t = clock()
    confusion = sum(threshold_confusions(c, k, ts, m, num_labels) for c, k, m, _ in pairs)
    seconds = (clock() - t) / len(pairs)
    return seconds, [float(v) for v in iou_per_class(confusion).nanmean(-1)]


def reading_and_counting(split, cam_dir: Path, num_labels: int) -> tuple[float, list[float]]:
    """A bare loop: each image's npz and mask read once (the calls the sweep makes) and counted; no loader, no
    checks, no progress. What ours must do at least."""
    from wsss.artifacts import ArtifactDir
    from wsss.cams.evaluate import default_thresholds, threshold_confusions
    from wsss.metrics.segmentation import iou_per_class

    ts, cams = torch.tensor(default_thresholds()), ArtifactDir(cam_dir, ".npz")
    t = now()
    confusion = 0
    for image_id in split.ids:
        maps, keys, mask = read(split, cams, image_id)
        confusion = confusion + threshold_confusions(maps, keys, ts, mask, num_labels)
    seconds = (now() - t) / len(split.ids)
    return seconds, [float(v) for v in iou_per_class(confusion).nanmean(-1)]


def map_bincount(pairs, num_labels: int) -> tuple[float, list[float]]:
    from wsss.metrics.segmentation import confusion_matrices, iou_per_class

    t = now()
    confusion = sum(confusion_matrices(p, m, num_labels) for _, _, m, p in pairs)
    seconds = (now() - t) / len(pairs)
    return seconds, [float(v) for v in iou_per_class(confusion).nanmean(-1)]


def voc_arguments(doc: str, images: int, repeats: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=images)
    p.add_argument("--repeats", type=int, default=repeats)
    return p


def voc_with_cams(work: Path, images: int):
    """A VOC-layout train_aug split of `images` 500 x 375 images under `work`, with CAMs in `work/cams`."""
    from wsss.data.voc import VOCDataset

    split = VOCDataset(write_voc(work / "VOC2012", images), "train_aug")
    write_cams(split, work / "cams")
    return split


def main(argv: list[str] | None = None) -> int:
    p = voc_arguments(__doc__, images=16, repeats=5)
    p.add_argument("--workers", type=int, default=2, help="loader processes of the as-run row (num_workers)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        split = voc_with_cams(Path(tmp), args.images)
        pairs = in_memory(split, Path(tmp) / "cams")
        k = split.num_classes + 1
        curve = {"miou": torch.tensor(ours(split, Path(tmp) / "cams")[1])}
        print(
            f"# evaluation, ours / counting alone; {machine()}; {args.images} images of 500 x 375, "
            "16 thresholds"
        )
        print(
            "| what | ours / image | ceiling / image | ceiling / ours (range) | goal |\n|---|---|---|---|---|"
        )
        for name, core in (
            ("one bincount of the pixels", counting),
            ("bincount of the 16 maps", map_bincount),
        ):
            diff = check_equal("evaluation", curve, {"miou": torch.tensor(core(pairs, k)[1])}, 0.0)
            r = interleaved(
                lambda: ours(split, Path(tmp) / "cams")[0], lambda: core(pairs, k)[0], args.repeats
            )
            print(r.row(f"CAM evaluation vs {name} (max \\|ΔmIoU\\| {diff:.0e})", GOAL), flush=True)
        cam_dir = Path(tmp) / "cams"
        bare = {"miou": torch.tensor(reading_and_counting(split, cam_dir, k)[1])}
        diff = check_equal("evaluation", curve, bare, 0.0)
        r = interleaved(
            lambda: ours(split, cam_dir)[0], lambda: reading_and_counting(split, cam_dir, k)[0], args.repeats
        )
        print(r.row(f"CAM evaluation vs reading each file once + one bincount (max \\|ΔmIoU\\| {diff:.0e})", GOAL),
              flush=True)
        as_run = {"miou": torch.tensor(ours_as_run(split, cam_dir, args.workers)[1])}
        diff = check_equal("evaluation", curve, as_run, 0.0)
        r = interleaved(
            lambda: ours_as_run(split, cam_dir, args.workers)[0],
            lambda: counting(pairs, k, clock=time.perf_counter)[0],
            args.repeats,
        )
        name = f"CAM evaluation as the task runs it, {args.workers} loader workers, wall clock, vs one bincount"
        print(r.row(f"{name} (max \\|ΔmIoU\\| {diff:.0e})", GOAL), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
