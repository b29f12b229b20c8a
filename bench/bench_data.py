"""The training data pipeline at the VOC recipes' settings: images per second one loader worker delivers.

VOC-sized JPEGs (500 x 375, quality 90, textured) and grey masks are written to a temporary VOCdevkit tree;
each recipe's train transform (its crop, its 320-640 random resize, flips, colour jitter or RandAugment as the
recipe says) runs over them exactly as a loader worker runs it (`TransformedSplit`: JPEG + PNG decode,
augmentation, normalisation, crop, tensor), one thread for OpenCV and torch, as in a worker. CPU seconds per
image are counted (time.process_time), which a loaded machine inflates much less than wall time; a worker's
rate is their inverse, and the workers a node needs follow from the rate its GPUs consume.

    python bench/bench_data.py                      # 3 recipes, 48 images each
    python bench/bench_data.py --images 96 --rate 250 --gpus 4
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compose, machine  # noqa: E402

RECIPES = ("voc12_rs269", "voc12_rs269_pnoc_ls", "voc12_deeplab_rs269")
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def write_voc(root: Path, count: int, seed: int = 0) -> Path:
    """`count` 500 x 375 JPEGs with grey masks of one or two classes, listed as train_aug."""
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(count):
        h, w = (375, 500) if i % 3 else (500, 375)
        smooth = cv2.resize(rng.uniform(0, 255, (h // 25, w // 25, 3)).astype(np.float32), (w, h))
        image = np.clip(smooth + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        mask = np.zeros((h, w), np.uint8)
        for k in rng.choice(20, size=1 + i % 2, replace=False):
            y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
            mask[y : y + h // 3, x : x + w // 3] = k + 1
        image_id = f"2007_{i:06d}"
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
        Image.fromarray(mask, mode="L").save(root / "SegmentationClassAug" / f"{image_id}.png")
        ids.append(image_id)
    (root / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(ids) + "\n")
    return root


def recipe_transform(recipe: str, work: Path):
    """The train transform and settings of `python run.py experiment=<recipe>`."""
    from wsss.data import transforms as T

    from wsss.saliency.data import ccam_train_transform

    cfg = compose([f"experiment={recipe}"], work / recipe)
    d, s = cfg["dataset"], cfg["stage"]
    aug = dict(s.get("augment") or {})
    on = " + ".join(k for k in ("hflip", "color_jitter", "randaugment") if aug.get(k))
    if s["name"] == "ccam":  # C²AM's own transform: resize by a factor, crop (wsss/saliency/data.py)
        factor = s.get("resize_factor", 1.15)
        tf = ccam_train_transform(s["crop_size"], *IMAGENET, factor, aug.get("hflip", True))
        return tf, f"{s['crop_size']} px crop of a ×{factor} resize, {on}"
    tf = T.train_transform(d["crop_size"], d["min_size"], d["max_size"], *IMAGENET, **aug)
    return (
        tf,
        f"{d['crop_size']} px crop of {d['min_size']}–{d['max_size']} "
        f"({aug.get('resize', 'cv2_cubic')}), {on}",
    )


def cpu_seconds_per_image(dataset, count: int, batch: int = 8) -> float:
    """What a worker spends on one image: read, augment and collate, batches of `batch`."""
    from wsss.data.datamodule import collate

    collate([dataset[0]])  # warm-up (first decode, RandAugment's tables)
    batches = max(1, count // batch)
    t = time.process_time()
    for b in range(batches):
        collate([dataset[(b * batch + i) % len(dataset)] for i in range(batch)])
    return (time.process_time() - t) / (batches * batch)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=list(RECIPES))
    p.add_argument("--images", type=int, default=48, help="images timed per recipe")
    p.add_argument("--rate", type=float, default=250.0, help="images per second the node's GPUs consume")
    p.add_argument("--gpus", type=int, default=4)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from wsss.data.datasets import TransformedSplit
    from wsss.data.voc import VOCDataset

    with tempfile.TemporaryDirectory() as tmp:
        root = write_voc(Path(tmp) / "VOC2012", min(args.images, 48))
        split = VOCDataset(root, "train_aug")
        print(f"# data pipeline, one worker process; {machine()}; 500 x 375 JPEG + PNG mask")
        print(
            f"| recipe | transform | CPU ms / image | images / s / worker "
            f"| workers for {args.rate:.0f} img/s "
            f"| per GPU ({args.gpus}) |\n|---|---|---|---|---|---|"
        )
        for recipe in args.recipes:
            tf, what = recipe_transform(recipe, Path(tmp))
            sec = cpu_seconds_per_image(TransformedSplit(split, tf, require_label=True), args.images)
            workers = math.ceil(args.rate * sec)
            print(
                f"| {recipe} | {what} | {sec * 1e3:.1f} | {1 / sec:.0f} | {workers} | "
                f"{math.ceil(workers / args.gpus)} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
