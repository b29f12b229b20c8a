"""Peak host memory (resident set, `ru_maxrss`) of the processes a GPU job runs, each in a fresh process.

  main process: Python with torch, Lightning and wsss imported and the recipe's stage built (its networks'
                weights in host memory, as before they move to the GPU): what every step's main process holds;
  loader worker: the recipe's training transform over VOC-sized JPEGs (500 x 375), 16 images (a worker is a
                fork of the main process: pages it does not touch are shared, so this is an upper bound);
  CRF worker:   one dense CRF at VOC size, 21 labels, 10 iterations (the C²AM, affinity-label and DeepLab CRF
                pools run one such process per worker).
A job's --mem is then main + workers x loader worker + CRF processes x CRF worker, with a margin.

    python bench/bench_memory.py
    python bench/bench_memory.py --recipes voc12_rs269 --skip-stages
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPES = ("voc12_rs269", "voc12_rs269_pnoc_ls", "voc12_deeplab_rs269")

PEAK = ("import resource, json; "
        "print(json.dumps({'peak_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")

STAGE = """
import sys, tempfile; from pathlib import Path; sys.path.insert(0, {here!r})
from common import compose; from hydra.utils import get_class
work = Path(tempfile.mkdtemp())
cfg = compose(["experiment={recipe}", "backbone.pretrained=false"], work / "run")
module = get_class(cfg["stage"]["_target_"])(cfg)
"""

LOADER = """
import sys, tempfile, torch, cv2; from pathlib import Path; sys.path.insert(0, {here!r})
torch.set_num_threads(1); cv2.setNumThreads(1)
from bench_data import write_voc, recipe_transform
from wsss.data.datasets import TransformedSplit; from wsss.data.voc import VOCDataset
from wsss.data.datamodule import collate
work = Path(tempfile.mkdtemp())
tf, _ = recipe_transform({recipe!r}, work)
ds = TransformedSplit(VOCDataset(write_voc(work / "VOC2012", 16), "train_aug"), tf, require_label=True)
for b in range(2):
    collate([ds[b * 8 + i] for i in range(8)])
"""

CRF = """
import numpy as np
from wsss.ops.crf import crf_probabilities
rng = np.random.default_rng(0)
image = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
probs = rng.random((21, 375, 500)).astype(np.float32); probs /= probs.sum(0)
crf_probabilities(image, probs, iterations=10)
"""


def peak_mib(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code + "\n" + PEAK], capture_output=True, text=True, timeout=600
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=list(RECIPES))
    p.add_argument("--skip-stages", action="store_true", help="only the loader and CRF workers")
    args = p.parse_args(argv)
    print("| process | recipe | peak RSS (MiB) |\n|---|---|---|")
    print(f"| CRF worker, 500 x 375, 21 labels | – | {peak_mib(CRF):.0f} |", flush=True)
    print(
        f"| Python + torch + wsss imported | – "
        f"| {peak_mib('import pytorch_lightning, torch, wsss.tasks'):.0f} |",
        flush=True,
    )
    for recipe in args.recipes:
        if recipe != "voc12_poolnet_rn50":  # PoolNet trains on whole images (its own loader, batch 1)
            print(
                f"| loader worker | {recipe} "
                f"| {peak_mib(LOADER.format(here=str(HERE), recipe=recipe)):.0f} |",
                flush=True,
            )
        if not args.skip_stages:
            print(
                f"| main process, stage built | {recipe} "
                f"| {peak_mib(STAGE.format(here=str(HERE), recipe=recipe)):.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
