"""The saliency network's multi-scale + flip prediction against its forwards alone on the same inputs.

ours:    `trainer.predict` of the saliency stage: resizing each scale (bilinear, the stage's default), the
         PoolNet forwards, sigmoid, flips and scales averaged at the image size, each image's PNG written.
ceiling: the network's forwards alone on the same resized (and flipped) inputs, made beforehand.
The ceiling's logits, merged here independently (sigmoid, bilinear to the image, flips added back, mean over
the views), must match the PNGs ours wrote within one grey level.

    python bench/bench_predict_saliency.py                 # 96 x 128 images, scales 0.5-2 + flip
    python bench/bench_predict_saliency.py --height 375 --width 500 --images 4
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import (  # noqa: E402
    GOAL,
    SCALES,
    TABLE_HEAD,
    arguments,
    forwards,
    make_batches,
    normalised,
    predict_ours,
)
from common import check_equal, compose, interleaved, machine, quiet_torch  # noqa: E402


def views_of(batches: list[dict], scales=SCALES) -> list[list[torch.Tensor]]:
    """Each image at every scale (bilinear on the normalised tensor), the flipped copy beside it."""
    out = []
    for b in batches:
        x, (h, w) = b["image"], b["image"].shape[-2:]
        per_scale = []
        for s in scales:
            size = (max(1, round(h * s)), max(1, round(w * s)))
            v = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            per_scale.append(torch.cat([v, v.flip(-1)]))
        out.append(per_scale)
    return out


def merged(outs: list[torch.Tensor], size: tuple[int, int]) -> np.ndarray:
    """Mean over scales and flips of σ(logits) at the image size, as uint8 grey levels."""
    total = 0
    for logits in outs:
        full = F.interpolate(torch.sigmoid(logits.float()), size=size, mode="bilinear", align_corners=False)
        total = total + full[:1] + full[1:].flip(-1)
    return ((total[0, 0] / (2 * len(outs))).clamp(0, 1) * 255).round().numpy()


def predicting_stage(stage: str, scales, work: Path, *overrides: str):
    """`stage` of the synthetic recipe at test size (seeded weights, eval mode), predicting `scales` and
    their flips."""
    from hydra.utils import get_class

    cfg = compose(
        [
            f"stage={stage}",
            "experiment=synthetic",
            "debug=tiny",
            f"stage.inference.scales={list(scales)}",
            "stage.inference.flip=true",
            *overrides,
        ],
        work / "run",
    )
    torch.manual_seed(0)
    return get_class(cfg["stage"]["_target_"])(cfg).eval()


def png_predict_against_forwards(module, batches, views, merge, atol: float, repeats: int, work: Path):
    """Checks the first image's PNG of ours against `merge` of the bare forwards (within `atol`), then times
    both sides interleaved; returns the ratio and the difference."""
    name = type(module).__name__
    predict_ours(module, batches[:1], work / "check", ".png")
    _, outs = forwards(module.net, views[:1])
    want = torch.from_numpy(merge(outs[0], tuple(batches[0]["image"].shape[-2:])).astype(np.float64))
    got = torch.from_numpy(np.asarray(Image.open(work / "check" / "img0.png")).astype(np.float64))
    diff = check_equal(name, {"map": got}, {"map": want}, atol)
    r = interleaved(
        lambda: predict_ours(module, batches, work / "out", ".png"),
        lambda: forwards(module.net, views)[0],
        repeats,
    )
    return r, diff


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__).parse_args(argv)
    quiet_torch(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        module = predicting_stage("saliency", SCALES, work)
        batches = normalised(make_batches(args.images, args.height, args.width, 1), module.norm_mean,
                             module.norm_std)
        views = views_of(batches)
        r, diff = png_predict_against_forwards(module, batches, views, merged, 1.0, args.repeats, work)
        print(
            f"# saliency predict, ours / forwards alone; {machine()}; PoolNet on ResNet-18, {args.height} x "
            f"{args.width} images, scales {list(SCALES)} + flip, bilinear resize, 32-true, CPU"
        )
        print(TABLE_HEAD)
        print(r.row(f"saliency predict (max \\|Δ\\| {diff:.0f} grey level)", f"≥ {GOAL}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
