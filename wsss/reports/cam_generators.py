"""The thesis's analysis of the CAM generators (§B.2.2: Tables 7 and 8, Figure 15) from the runs of
`pipeline=cam_generators`, written into the pipeline folder when its steps are done:

- `table7.md`: each generator's monitored per-epoch train CAM mIoU (single scale, no TTA; the runs log it
  with `stage.evaluation.monitor_train_cam_miou=true`, wsss/cams/monitor.py), its maximum, and the
  multi-scale + flip CAM mIoU of the last weights (the thesis's "TTA" column);
- `table8.md` / `table8.csv`: per-class IoU of every generator (best background threshold of its CAM
  evaluation) beside each class's group, size category, %S, %C and L (wsss/reports/class_statistics.py),
  the averages of every size category and group of more than one class, and the Pearson correlation over
  the foreground classes of each column with %S, %C and L;
- `figure15.png`: mIoU against the background threshold, every generator on one plot.
A `thesis <column>` beside ours when the step ran one of the thesis's CAM recipes (wsss/thesis/rows.py;
`python -m wsss.thesis` lists how each run departs from its recipe).
Values are percentages, as in the thesis. The `overall` row is the mIoU (background included) for the
IoU columns, the mean over the background and classes for %S, over the classes for %C and L.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsss.artifacts import atomic_write_text
from wsss.cams.evaluate import SweepResult, plot_curve
from wsss.data.datasets import build_split
from wsss.reports.class_statistics import SIZES, ClassStatistics, class_statistics
from wsss.thesis import value
from wsss.thesis.rows import Matcher
from wsss.thesis.runs import monitored_epochs, read_run as read_run_folder

log = logging.getLogger(__name__)


@dataclass
class GeneratorRun:
    name: str                        # the pipeline step
    sweep: SweepResult | None        # its CAM evaluation of the split (None: not evaluated)
    epochs: list[float] = field(default_factory=list)  # monitored train CAM mIoU, one per epoch
    thesis_row: str | None = None    # its Table 7 row when it is one of the thesis's runs


def read_sweep(metrics: dict, split: str) -> SweepResult | None:
    p = f"cams/{split}/"
    if f"{p}iou" not in metrics:
        return None
    iou = metrics[f"{p}iou"]
    return SweepResult(metrics[f"{p}thresholds"], metrics[f"{p}miou_curve"], metrics[f"{p}best_threshold"],
                       metrics[f"{p}miou"], list(iou.values()), list(iou))


def read_generator(name: str, run_dir: Path, split: str) -> GeneratorRun:
    path = run_dir / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    generator = Matcher().match(read_run_folder(run_dir)).name if split == "train" else None
    run = GeneratorRun(name, read_sweep(metrics, split), monitored_epochs(run_dir),
                       f"RS269 {generator}" if generator else None)
    if run.sweep is None:
        log.warning("%s: no cams/%s evaluation in %s: its Table 8 column and Figure 15 curve are left out", name,
                    split, path)
    return run


def pearson(x, y) -> float:
    """Pearson's correlation of the finite pairs of x and y (nan with fewer than two or no variance)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if ok.sum() > 1 and denom > 0 else float("nan")


def _mean(values) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


# -- Table 8 ------------------------------------------------------------------------------------------
def table8_columns(stats: ClassStatistics, runs: list[GeneratorRun]) -> dict[str, np.ndarray]:
    """Every numeric column over [background, classes...] (percent; nan where the thesis has a dash)."""
    nan = float("nan")
    cols = {"%S": 100 * np.array([stats.background_size, *stats.relative_size]),
            "%C": 100 * np.array([nan, *stats.cooccurrence]),
            "L": np.array([nan, *stats.cardinality])}
    for run in runs:
        if run.sweep is None:
            continue
        iou = dict(zip(run.sweep.classes, run.sweep.iou))
        cols[run.name] = 100 * np.array([iou.get(c, nan) for c in ["background", *stats.classes]], float)
        if run.thesis_row:
            column = run.thesis_row.removeprefix("RS269 ")
            cols[f"thesis {column}"] = np.array(
                [value(8, c, column) if value(8, c, column) is not None else nan for c in ["background", *stats.classes]],
                float)
    return cols


def table8_rows(stats: ClassStatistics, runs: list[GeneratorRun]) -> tuple[list[str], list[dict]]:
    cols = table8_columns(stats, runs)
    k = len(stats.classes)
    rows = [{"class": "background", "group": "-", "size": "-", **{c: v[0] for c, v in cols.items()}}]
    rows += [{"class": stats.classes[i], "group": stats.group(i), "size": stats.size(i),
              **{c: v[i + 1] for c, v in cols.items()}} for i in range(k)]
    overall = {c: _mean(v if c not in ("%C", "L") else v[1:]) for c, v in cols.items()}
    rows.append({"class": "overall", "group": "", "size": "", **overall})
    sets = [(s, [i for i in range(k) if stats.size(i) == s]) for s in SIZES]
    groups = sorted({stats.group(i) for i in range(k)} - {"-"})
    sets += [(g, [i for i in range(k) if stats.group(i) == g]) for g in groups]
    for name, members in sets:
        if len(members) > 1:  # one-class groups (bottle, person) are their class's row
            rows.append({"class": name, "group": "", "size": "",
                         **{c: _mean(v[[i + 1 for i in members]]) for c, v in cols.items()}})
    for prop in ("%S", "%C", "L"):
        rows.append({"class": f"rho {prop}", "group": "", "size": "",
                     **{c: 100 * pearson(v[1:], cols[prop][1:]) for c, v in cols.items()}})
    return ["class", "group", "size", *cols], rows


def _text(v) -> str:
    return v if isinstance(v, str) else ("-" if v != v else f"{v:.1f}")


def table8_markdown(columns: list[str], rows: list[dict], title: str) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_text(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def table8_csv(columns: list[str], rows: list[dict]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    w.writerows([[_text(r[c]) for c in columns] for r in rows])
    return out.getvalue()


# -- Table 7 ------------------------------------------------------------------------------------------
def table7_markdown(runs: list[GeneratorRun], split: str) -> str:
    epochs = max((len(r.epochs) for r in runs), default=0)
    columns = ["generator", *(f"E{e + 1}" for e in range(epochs)), "Max", "TTA", "thesis Max", "thesis TTA"]
    lines = [f"# Thesis Table 7: CAM mIoU (%) on {split} per epoch (single scale, monitoring only) and with TTA", "",
             "| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in runs:
        per_epoch = [100 * v for v in r.epochs] + [float("nan")] * (epochs - len(r.epochs))
        tta = 100 * r.sweep.best_miou if r.sweep else float("nan")
        thesis = [value(7, r.thesis_row, c) if r.thesis_row else None for c in ("Max", "TTA")]
        best = max((v for v in per_epoch if v == v), default=float("nan"))
        cells = [*per_epoch, best, tta, *(float("nan") if t is None else t for t in thesis)]
        lines.append("| " + " | ".join([r.name, *(_text(v) for v in cells)]) + " |")
    if not any(r.epochs for r in runs):
        lines += ["", "No per-epoch values: run with `stage.evaluation.monitor_train_cam_miou=true` and the csv "
                      "logger (on in the voc12_rs269_* recipes)."]
    return "\n".join(lines) + "\n"


# -- the report ---------------------------------------------------------------------------------------
def write_report(steps, out_dir: Path, cfg: dict, split: str = "train") -> dict[str, Path]:
    """Tables 7-8 and Figure 15 of the pipeline's steps (objects with id, run_dir, plain) into `out_dir`, on
    `split` (the thesis's: VOC train), or on the data set's first evaluated split when it has no such split
    (e.g. COCO 2014: train2014)."""
    evaluated = list(cfg["dataset"].get("eval_splits") or [])
    if evaluated and split not in evaluated:
        log.info("cam_generators report: %s has no split %r; the tables are on %r", cfg["dataset"]["name"], split,
                 evaluated[0])
        split = evaluated[0]
    runs = [read_generator(s.id, Path(s.run_dir), split) for s in steps]
    dataset = build_split(cfg["dataset"], split)
    if not dataset.has_masks:
        raise ValueError(f"cam_generators report: split {split!r} of data set {cfg['dataset']['name']!r} has no "
                         f"ground-truth masks; give the report a split with masks (conf/pipeline/cam_generators.yaml)")
    stats = class_statistics(dataset)
    title = f"Thesis Table 8: IoU (%) per class on {cfg['dataset']['name']} {split}"
    columns, rows = table8_rows(stats, runs)
    out = {"table7": out_dir / "table7.md", "table8": out_dir / "table8.md", "table8_csv": out_dir / "table8.csv",
           "figure15": out_dir / "figure15.png"}
    atomic_write_text(out["table7"], table7_markdown(runs, split))
    atomic_write_text(out["table8"], table8_markdown(columns, rows, title))
    atomic_write_text(out["table8_csv"], table8_csv(columns, rows))
    curves = {r.name: r.sweep for r in runs if r.sweep is not None}
    if curves:
        tmp = out["figure15"].with_name(".figure15.tmp.png")
        plot_curve(curves, tmp)
        tmp.replace(out["figure15"])
    log.info("cam_generators report: %s", ", ".join(str(p) for p in out.values()))
    return out
