"""One figure of what every step of `pipeline=wsss` made of a few images: CAMs, saliency, random walk,
pseudo masks, DeepLab's prediction and the ground truth (read from the run folders, nothing recomputed).

    python scripts/pipeline_figure.py                                  # runs/ of `make run`, 4 val images
    python scripts/pipeline_figure.py --runs /tmp/clone/runs --images 3 --out docs/pipeline_synthetic.png
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from wsss.artifacts import ArtifactDir, atomic_write_bytes
from wsss.data.datasets import build_split
from wsss.logging_utils import blend, heat_colours, label_colours
from wsss.saliency.maps import read_saliency

# (column title, stage, artifact folder, what it holds)
COLUMNS = [
    ("classifier CAM", "classifier", "cams", "cams"),
    ("P-NOC CAM", "pnoc", "cams", "cams"),
    ("C²AM-H saliency", "ccam", "saliency", "saliency"),
    ("refined saliency", "saliency", "saliency", "saliency"),
    ("random walk", "affinity", "rw", "rw"),
    ("pseudo mask", "affinity", "pseudo_masks", "mask"),
    ("DeepLabV3+", "deeplab", "predictions", "mask"),
]
MAPS = ("cams", "rw")  # .npz folders of per-class maps; saliency: .npz or .png; the others hold PNGs


def panel(kind: str, folder: ArtifactDir, image_id: str, image: np.ndarray) -> np.ndarray:
    """An RGB panel: maps overlaid as a heat map (max over the image's classes), masks in the VOC palette."""
    if kind in MAPS:
        planes = folder.read_npz(image_id)[kind].astype(np.float32)
        top = planes.max(axis=0) if len(planes) else np.zeros(image.shape[:2], np.float32)
        return blend(image, heat_colours(top))
    if kind == "saliency":
        return heat_colours(read_saliency(folder, image_id)).astype(np.uint8)
    return label_colours(folder.read_png(image_id)).astype(np.uint8)


def artifact_folder(root: Path, kind: str) -> ArtifactDir:
    """The folder of one column; a saliency folder holds the file type its manifest records (C²AM-H: float
    .npz maps, the saliency network: .png)."""
    if kind == "saliency":
        return ArtifactDir(root, (ArtifactDir(root, ".png").manifest() or {}).get("suffix", ".png"))
    return ArtifactDir(root, ".npz" if kind in MAPS else ".png")


def missing_steps(runs: Path, dataset: str, backbone: str, run_name: str, split: str) -> list[str]:
    """One line per pipeline step whose folder the figure reads but that is not there."""
    folders = [(stage, runs / stage / dataset / backbone / run_name / folder / split)
               for _, stage, folder, _ in COLUMNS]
    folders.append(("deeplab", runs / "deeplab" / dataset / backbone / run_name / "config.yaml"))
    return [f"step {stage}: {path} does not exist"
            for stage, path in dict.fromkeys(folders) if not path.exists()]


def figure(runs: Path, dataset: str, backbone: str, run_name: str, split: str, count: int) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def run_dir(stage: str) -> Path:
        return runs / stage / dataset / backbone / run_name

    missing = missing_steps(runs, dataset, backbone, run_name, split)
    if missing:
        raise SystemExit("error: the figure reads every step of pipeline=wsss; missing:\n  "
                         + "\n  ".join(missing)
                         + "\nRun them first: python run.py pipeline=wsss (with the data set, backbone and "
                         f"run name of {runs / '<stage>' / dataset / backbone / run_name}), or pass --runs / "
                         "--dataset / --backbone / --run-name.")
    cfg = yaml.safe_load((run_dir("deeplab") / "config.yaml").read_text())
    ds = build_split(cfg["dataset"], split)
    ids = ds.ids[:count]
    titles = ["image", *(c[0] for c in COLUMNS), "ground truth"]
    fig = Figure(figsize=(1.5 * len(titles), 1.5 * len(ids) + 0.3))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ids), len(titles), squeeze=False)
    for r, image_id in enumerate(ids):
        image = ds.load_image(image_id)
        panels = [image]
        panels += [panel(kind, artifact_folder(run_dir(stage) / folder / split, kind), image_id, image)
                   for _, stage, folder, kind in COLUMNS]
        panels.append(label_colours(ds.load_mask(image_id)).astype(np.uint8))
        for c, p in enumerate(panels):
            axes[r][c].imshow(p)
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
            if r == 0:
                axes[r][c].set_title(titles[c], fontsize=8)
        axes[r][0].set_ylabel(image_id, fontsize=7)
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    buf.seek(0)
    small = io.BytesIO()  # 256 colours: a third of the size, no visible loss for heat maps and palettes
    Image.open(buf).convert("RGB").quantize(256).save(small, format="png", optimize=True)
    return small.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--run-name", default="default")
    parser.add_argument("--split", default="val")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("docs/pipeline_synthetic.png"))
    args = parser.parse_args()
    png = figure(args.runs, args.dataset, args.backbone, args.run_name, args.split, args.images)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, png)
    print(f"wrote {args.out} ({len(png) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
