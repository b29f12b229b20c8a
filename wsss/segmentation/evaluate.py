"""mIoU of palette-PNG predictions against ground truth, and per-class IoU tables in the layout of the
thesis' Table 11 (one row per run, the classes as columns, then the mean).

mIoU follows `wsss.metrics.segmentation`: GT 255 ignored, IoU_c = TP / (TP + FP + FN), nan-mean over
the K = C + 1 classes (background included).
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from wsss.artifacts import ArtifactDir
from wsss.data.ground_truth import ground_truth_mask
from wsss.metrics.segmentation import confusion_matrix, iou_per_class
from wsss.progress import progress


class _PredictionPairs(Dataset):
    def __init__(self, dataset, predictions: ArtifactDir):
        self.dataset, self.predictions = dataset, predictions

    def __len__(self) -> int:
        return len(self.dataset.ids)

    def __getitem__(self, index: int):
        image_id = self.dataset.ids[index]
        mask = ground_truth_mask(self.dataset, image_id)
        pred = self.predictions.read_png(image_id)
        if pred.shape != mask.shape:
            raise ValueError(f"{self.predictions.path(image_id)}: prediction is {pred.shape} but the mask of "
                             f"{image_id!r} is {mask.shape}")
        return torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))


@dataclass
class SegmentationScores:
    classes: list[str]          # background first
    iou: list[float]            # per class, nan where the class is in neither prediction nor GT
    confusion: list[list[int]] = field(repr=False, default_factory=list)

    @property
    def miou(self) -> float:
        valid = [v for v in self.iou if not math.isnan(v)]
        return float(sum(valid) / len(valid)) if valid else float("nan")

    def as_dict(self) -> dict:
        return {"classes": self.classes, "iou": self.iou, "miou": self.miou, "confusion": self.confusion}

    @classmethod
    def from_dict(cls, d: dict) -> "SegmentationScores":
        return cls(list(d["classes"]), [float(v) for v in d["iou"]], d.get("confusion", []))


def evaluate_predictions(dataset, predictions_dir: str | Path, device: str = "cpu",
                         num_workers: int = 0) -> SegmentationScores:
    """Confusion matrix of every prediction `<predictions_dir>/<id>.png` against the split's GT."""
    num_labels = dataset.num_classes + 1
    preds = ArtifactDir(predictions_dir, ".png")
    loader = DataLoader(_PredictionPairs(dataset, preds), batch_size=None, num_workers=num_workers)
    confusion = torch.zeros(num_labels, num_labels, dtype=torch.long, device=device)
    for pred, mask in progress(loader, f"evaluate {preds.root}", total=len(loader.dataset)):
        confusion += confusion_matrix(pred.to(device), mask.to(device), num_labels)
    ious = iou_per_class(confusion)
    return SegmentationScores(["background", *dataset.classes], [float(v) for v in ious],
                              confusion.cpu().tolist())


# -- tables (thesis Table 11: methods as rows, bg + classes + avg. as columns) -------------------------
def _percent(v: float) -> str:
    return "–" if math.isnan(v) else f"{100 * v:.1f}"


def iou_table_markdown(rows: dict[str, SegmentationScores]) -> str:
    """Markdown table, IoU in % with one decimal; `–` for a class absent from GT and prediction."""
    classes = _common_classes(rows)
    lines = ["| method | " + " | ".join(classes) + " | avg. |",
             "|---|" + "---:|" * (len(classes) + 1)]
    for name, s in rows.items():
        lines.append(f"| {name} | " + " | ".join(_percent(v) for v in s.iou) + f" | {_percent(s.miou)} |")
    return "\n".join(lines) + "\n"


def iou_table_csv(rows: dict[str, SegmentationScores]) -> str:
    """CSV with the same columns, IoU as fractions (4 decimals; empty for undefined)."""
    classes = _common_classes(rows)
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["method", *classes, "miou"])
    for name, s in rows.items():
        out.writerow([name, *("" if math.isnan(v) else f"{v:.4f}" for v in s.iou), f"{s.miou:.4f}"])
    return buf.getvalue()


def _common_classes(rows: dict[str, SegmentationScores]) -> list[str]:
    if not rows:
        raise ValueError("no rows to tabulate")
    first = next(iter(rows.values())).classes
    for name, s in rows.items():
        if s.classes != first:
            raise ValueError(f"row {name!r} has classes {s.classes}, but the first row has {first}")
    return list(first)


def load_scores(path: str | Path) -> SegmentationScores:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no evaluation here (run the deeplab stage with tasks=[evaluate] first)")
    return SegmentationScores.from_dict(json.loads(path.read_text()))


def scores_path(run_dir: str | Path, split: str) -> Path:
    """Where the evaluate task stores the scores of one split of a run."""
    return Path(run_dir) / "evaluation" / f"{split}.json"


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m wsss.segmentation.evaluate --split val NAME=RUN_DIR ...` prints one Table-11 table."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--split", default="val")
    parser.add_argument("--csv", default=None, help="also write the table as CSV here")
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR (or RUN_DIR, named by its folder)")
    args = parser.parse_args(argv)
    rows = {}
    for spec in args.runs:
        name, _, run_dir = spec.rpartition("=") if "=" in spec else (Path(spec).name, "", spec)
        rows[name] = load_scores(scores_path(run_dir, args.split))
    print(iou_table_markdown(rows), end="")
    if args.csv:
        Path(args.csv).write_text(iou_table_csv(rows))


if __name__ == "__main__":
    main()
