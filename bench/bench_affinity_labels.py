"""The affinity-label pass against its dense CRF calls alone.

ours:    what the affinity stage's `affinity_labels` task runs for a split (`wsss.fill.fill`, one process):
         reading each image's CAM npz and JPEG, thresholding at δ_fg and δ_bg, a label CRF of each (10
         iterations), combining, writing the palette PNG, then the manifest.
ceiling: the two `crf_labels` calls of each image alone, on the same images and thresholded maps in memory.
The label maps ours wrote must equal the ones combined here from the ceiling's CRF outputs. VOC-sized images
(500 x 375), one or two present classes, CAMs without saliency (IRN's background rule).

    python bench/bench_affinity_labels.py
    python bench/bench_affinity_labels.py --images 8 --repeats 5
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_evaluate import voc_arguments, voc_with_cams  # noqa: E402
from bench_predict import TABLE_HEAD  # noqa: E402
from common import check_equal, interleaved, machine, now  # noqa: E402

FG, BG, ITERATIONS, GT_PROB = 0.40, 0.10, 10, 0.7  # conf/stage/affinity.yaml's affinity_labels
GOAL = "≥ 0.9 (within 10 %)"


def ours(split, cams, out: Path) -> float:
    """CPU seconds per image of the pass into the fresh folder `out`."""
    from wsss.artifacts import ArtifactDir
    from wsss.fill import fill
    from wsss.refine.affinity_labels import affinity_labels

    def items(ids):
        for image_id in ids:
            z = cams.read_npz(image_id)
            image = split.load_image(image_id)
            yield image_id, (z["cams"], z["keys"], image, None, FG, BG, ITERATIONS, GT_PROB)

    t = now()
    fill(ArtifactDir(out, ".png"), split.ids, {"settings": "bench"}, items, affinity_labels, {}, palette=True)
    return (now() - t) / len(split.ids)


def in_memory(split, cams) -> list[tuple]:
    """Each image, its class ids and its two thresholded label maps (δ_fg, δ_bg)."""
    from wsss.refine.affinity_labels import threshold_argmax

    out = []
    for image_id in split.ids:
        z = cams.read_npz(image_id)
        maps = z["cams"].astype(np.float32)
        image = split.load_image(image_id)
        out.append((image, z["keys"], threshold_argmax(maps, FG), threshold_argmax(maps, BG)))
    return out


def crf_alone(pairs) -> tuple[float, list[np.ndarray]]:
    """CPU seconds per image of the CRF calls alone, and the label maps combined from their outputs."""
    from wsss.ops.crf import crf_labels
    from wsss.refine.affinity_labels import combine_labels

    t, refined = now(), []
    for image, keys, fg, bg in pairs:
        n = len(keys) + 1
        fg, bg = (crf_labels(image, m, n, ITERATIONS, GT_PROB) for m in (fg, bg))
        refined.append((keys, fg, bg))
    seconds = (now() - t) / len(pairs)
    maps = [combine_labels(np.concatenate([[0], keys + 1])[fg], bg == 0) for keys, fg, bg in refined]
    return seconds, maps


def main(argv: list[str] | None = None) -> int:
    args = voc_arguments(__doc__, images=4, repeats=3).parse_args(argv)
    torch.set_num_threads(1)
    from wsss.artifacts import ArtifactDir

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        split = voc_with_cams(work, args.images)
        cams = ArtifactDir(work / "cams", ".npz")
        pairs = in_memory(split, cams)
        ours(split, cams, work / "check")
        written = ArtifactDir(work / "check", ".png")
        got = {i: torch.from_numpy(written.read_png(i).astype(np.int64)) for i in split.ids}
        want = {i: torch.from_numpy(m.astype(np.int64)) for i, m in zip(split.ids, crf_alone(pairs)[1])}
        diff = check_equal("affinity labels", got, want, 0.0)
        runs = iter(range(10**6))
        r = interleaved(lambda: ours(split, cams, work / f"out{next(runs)}"), lambda: crf_alone(pairs)[0],
                        args.repeats)
        print(f"# affinity labels, ours / CRF calls alone; {machine()}; {args.images} images of 500 x 375, "
              f"label CRF {ITERATIONS} iterations, one process")
        print(TABLE_HEAD)
        print(r.row(f"affinity labels vs its 2 CRF calls (label maps equal, max \\|Δ\\| {diff:.0f})", GOAL))
    return 0


if __name__ == "__main__":
    sys.exit(main())
