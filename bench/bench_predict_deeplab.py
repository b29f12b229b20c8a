"""DeepLab's multi-scale + flip prediction against its forwards alone on the same inputs.

ours:    `trainer.predict` of the deeplab stage (no CRF): resizing each scale (bilinear, the stage's default),
         the DeepLabV3+ forwards, softmax of every view at the image size, flips added back, the mean over the
         views, the argmax written as each image's palette PNG.
ceiling: the network's forwards alone on the same resized (and flipped) inputs, made beforehand.
The ceiling's logits, merged here independently, must give the label maps ours wrote (every pixel).

    python bench/bench_predict_deeplab.py                  # 96 x 128 images, the stage's six scales + flip
    python bench/bench_predict_deeplab.py --height 375 --width 500 --images 4
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import GOAL, TABLE_HEAD, arguments, make_batches, normalised  # noqa: E402
from bench_predict_saliency import png_predict_against_forwards, predicting_stage, views_of  # noqa: E402
from common import machine, quiet_torch  # noqa: E402

SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # conf/stage/deeplab.yaml


def merged(outs: list[torch.Tensor], size: tuple[int, int]) -> np.ndarray:
    """The label map: argmax of the mean over scales and flips of the softmax at the image size."""
    total = 0
    for logits in outs:
        probs = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False).softmax(1)
        total = total + probs[:1] + probs[1:].flip(-1)
    return total[0].argmax(0).numpy()


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__).parse_args(argv)
    quiet_torch(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        module = predicting_stage(
            "deeplab", SCALES, work, "stage.inference.crf=null", "stage.backbone_checkpoint=null")
        batches = normalised(make_batches(args.images, args.height, args.width, module.num_classes),
                             module.norm_mean, module.norm_std)
        views = views_of(batches, SCALES)
        r, diff = png_predict_against_forwards(module, batches, views, merged, 0.0, args.repeats, work)
        print(
            f"# DeepLab predict, ours / forwards alone; {machine()}; DeepLabV3+ on ResNet-18, "
            f"{args.height} x {args.width} images, scales {list(SCALES)} + flip, bilinear resize, "
            "32-true, CPU"
        )
        print(TABLE_HEAD)
        print(r.row(f"DeepLab predict (label maps equal, max \\|Δ\\| {diff:.0f})", f"≥ {GOAL}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
