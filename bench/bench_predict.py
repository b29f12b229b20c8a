"""The CAM stages' multi-scale + flip prediction against the network's forwards alone on the same inputs.

ours:    `trainer.predict` of the classifier stage (what every CAM stage runs: puzzle, occse, poc, pnoc share
         `CAMStage.predict_step`): resizing each scale, the forwards, merging flips and scales, the stride-4
         seeds, normalising the present classes and writing each image's npz.
ceiling: the network's forwards alone on the same resized (and flipped) inputs, made beforehand.
The ceiling's outputs, merged here independently (ReLU, flips added back, bilinear to the image, summed over
scales, each present class over its maximum), must match the maps ours wrote.

    python bench/bench_predict.py                      # 96 x 128 images, scales 0.5-2 + flip
    python bench/bench_predict.py --height 375 --width 500 --images 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytorch_lightning as L
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import check_equal, compose, interleaved, machine, now, quiet_torch  # noqa: E402

SCALES = (0.5, 1.0, 1.5, 2.0)
GOAL = 0.9


class Images(L.LightningDataModule):
    """The pre-made batches as a predict loader, with the normalisation the stage asks its data module for."""

    def __init__(self, batches: list[dict], mean, std):
        super().__init__()
        self.batches, self.mean, self.std = batches, mean, std

    def predict_dataloader(self):
        return torch.utils.data.DataLoader(self.batches, batch_size=None)


class BatchClock(L.Callback):
    def __init__(self):
        self.times: list[float] = []
        self.start = 0.0

    def on_predict_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
        self.start = now()

    def on_predict_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        self.times.append(now() - self.start)


def make_batches(n: int, height: int, width: int, classes: int, seed: int = 0) -> list[dict]:
    """One image a batch (VOC images differ in size), values of a normalised uint8 image."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        pixels = torch.randint(0, 256, (1, 3, height, width), generator=g).float() / 255
        label = torch.zeros(1, classes)
        label[0, torch.randperm(classes, generator=g)[:2]] = 1
        out.append({"id": [f"img{i}"], "image": pixels, "label": label})
    return out


def normalised(batches: list[dict], mean, std) -> list[dict]:
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return [{**b, "image": (b["image"] - m) / s} for b in batches]


def predict_ours(module, batches: list[dict], out: Path, suffix: str = ".npz") -> float:
    """Median seconds per image of `trainer.predict`, the stage's files (`suffix`) written under `out`."""
    from wsss.artifacts import ArtifactDir

    clock = BatchClock()
    module.writer = ArtifactDir(out, suffix)
    out.mkdir(parents=True, exist_ok=True)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    trainer.predict(
        module, datamodule=Images(batches, module.norm_mean, module.norm_std), return_predictions=False
    )
    return sorted(clock.times)[len(clock.times) // 2]


def views_of(module, batches: list[dict], inf: dict) -> list[list[torch.Tensor]]:
    """Each image's network inputs, as ours makes them: every scale, the flipped copy beside it."""
    from wsss.cams.inference import scaled_view

    out = []
    for b in batches:
        x, (h, w) = b["image"], b["image"].shape[-2:]
        per_scale = []
        for s in inf["scales"]:
            v = scaled_view(
                x,
                (max(1, round(h * s)), max(1, round(w * s))),
                inf["image_resize"],
                module.norm_mean,
                module.norm_std,
            )
            per_scale.append(torch.cat([v, v.flip(-1)]))
        out.append(per_scale)
    return out


def forwards(forward, views: list[list[torch.Tensor]]) -> tuple[float, list[list[torch.Tensor]]]:
    """Median seconds per image of `forward` alone (the network's call) over each image's views, and its
    outputs."""
    times, outs = [], []
    with torch.inference_mode():
        for per_scale in views:
            t = now()
            outs.append([forward(v) for v in per_scale])
            times.append(now() - t)
    return sorted(times)[len(times) // 2], outs


def merged(outs: list[torch.Tensor], label: torch.Tensor, size: tuple[int, int], stride: int) -> np.ndarray:
    """The ceiling's outputs merged as the thesis code does (flip_merge=image): the present classes' maps."""
    h, w = size
    up = (stride * -(-h // stride), stride * -(-w // stride))
    total = 0
    for cams in outs:
        full = F.interpolate(F.relu(cams.float()), size=up, mode="bilinear", align_corners=False)[..., :h, :w]
        total = total + full[:1] + full[1:].flip(-1)
    present = label[0].nonzero().flatten()
    maps = total[0, present]
    return (maps / (maps.amax(dim=(1, 2), keepdim=True) + 1e-5)).numpy()


def arguments(doc: str) -> argparse.ArgumentParser:
    """The options the predict benchmarks share: image size, images a block, repeats, torch threads."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--images", type=int, default=4, help="images per timed block")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    return p


TABLE_HEAD = "| what | ours / image | ceiling / image | ceiling / ours (range) | goal |\n|---|---|---|---|---|"


def main(argv: list[str] | None = None) -> int:
    p = arguments(__doc__)
    p.add_argument("--image-resize", default="pil_bicubic", choices=("pil_bicubic", "bilinear"))
    args = p.parse_args(argv)
    quiet_torch(args.threads)
    from wsss.stages.classifier import ClassifierStage

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg = compose(
            [
                "stage=classifier",
                "experiment=synthetic",
                "debug=tiny",
                f"stage.inference.scales={list(SCALES)}",
                "stage.inference.flip=true",
                "stage.inference.flip_merge=image",
                f"stage.inference.image_resize={args.image_resize}",
                "stage.inference.storage=float32",
            ],
            work / "run",
        )
        torch.manual_seed(0)
        module = ClassifierStage(cfg).eval()
        inf = {"scales": SCALES, "image_resize": args.image_resize}
        batches = normalised(
            make_batches(args.images, args.height, args.width, module.num_classes),
            module.norm_mean,
            module.norm_std,
        )
        views = views_of(module, batches, inf)
        predict_ours(module, batches[:1], work / "check")
        _, outs = forwards(module.raw_cams, views[:1])
        stride = int(cfg["stage"]["inference"].get("upsample_stride", 16))
        want = merged(outs[0], batches[0]["label"], (args.height, args.width), stride)
        got = np.load(work / "check" / "img0.npz")["cams"]
        diff = check_equal(
            "CAM predict", {"cams": torch.from_numpy(got)}, {"cams": torch.from_numpy(want)}, 1e-4
        )
        r = interleaved(
            lambda: predict_ours(module, batches, work / "out"),
            lambda: forwards(module.raw_cams, views)[0],
            args.repeats,
        )
        print(
            f"# predict, ours / forwards alone; {machine()}; ResNet-18, {args.height} x {args.width} images, "
            f"scales {list(SCALES)} + flip, {args.image_resize} resize, 32-true, CPU"
        )
        print(TABLE_HEAD)
        print(r.row(f"CAM predict (max \\|Δ\\| {diff:.1e})", f"≥ {GOAL}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
