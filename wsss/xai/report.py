"""The xai stage's results as files and logs: the Table-4 layout (methods as columns, %IC %AD %ADO %AR %ARO
F1− F1+ as rows, the best value of each row in bold), `xai/results.json`, the entries of metrics.json, and the
table and scalars sent to the loggers. Only this run's numbers: the thesis's Tables 3, 4 and 6 are put beside
them by the thesis report (`python -m wsss.thesis <runs folder>`)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch

from wsss.xai.methods import REGISTRY

#: Table 4's rows: (metric key of MultiLabelCamMetrics, label, higher is better)
TABLE_ROWS: tuple[tuple[str, str, bool], ...] = (
    ("ic", "%IC ↑", True), ("ad", "%AD ↓", False), ("ado", "%ADO ↑", True), ("ar", "%AR ↑", True),
    ("aro", "%ARO ↓", False), ("f1_neg", "F1− ↓", False), ("f1_pos", "F1+ ↑", True))
METRIC_KEYS = tuple(key for key, _, _ in TABLE_ROWS)
DISPLAY_NAMES = {name: cls.display_name for name, cls in REGISTRY.items()}  # column headings



def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def method_results(values: dict[str, torch.Tensor], classes: Sequence[str], seconds: float) -> dict:
    """Plain (JSON) results of one method: macro, micro, per-class values, pairs per class, seconds."""
    return {
        "macro": {k: float(values[k]) for k in METRIC_KEYS},
        "micro": {k: float(values[f"{k}_micro"]) for k in METRIC_KEYS},
        "per_class": {k: dict(zip(classes, map(finite_or_none, values[f"{k}_per_class"].tolist())))
                      for k in METRIC_KEYS},
        "pairs": dict(zip(classes, (int(c) for c in values["count"].tolist()))),
        "seconds": seconds,
    }


def results_path(run_dir: Path) -> Path:
    return Path(run_dir) / "xai" / "results.json"


# -- the results table (Table 4 layout) -------------------------------------------------------------
def best_columns(values: Sequence[float], higher_is_better: bool) -> set[int]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return set()
    best = max(finite) if higher_is_better else min(finite)
    return {i for i, v in enumerate(values) if math.isfinite(v) and round(v, 2) == round(best, 2)}


def table_rows(results: dict[str, dict], methods: Sequence[str]) -> list[tuple[str, list[float], set[int]]]:
    """(row label, one macro value per method, columns holding the best value) per Table-4 metric."""
    rows = []
    for key, label, higher in TABLE_ROWS:
        values = [float(results[m]["macro"][key]) for m in methods]
        rows.append((label, values, best_columns(values, higher)))
    return rows


def fmt(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "nan"


def table_csv(results: dict[str, dict], methods: Sequence[str]) -> str:
    lines = [",".join(["metric", *(DISPLAY_NAMES.get(m, m) for m in methods)])]
    lines += [",".join([label, *map(fmt, values)]) for label, values, _ in table_rows(results, methods)]
    return "\n".join(lines) + "\n"


def table_markdown(results: dict[str, dict], methods: Sequence[str], caption: str = "") -> str:
    head = "| Metric | " + " | ".join(DISPLAY_NAMES.get(m, m) for m in methods) + " |\n"
    head += "|---|" + "---:|" * len(methods) + "\n"
    body = "".join("| " + label + " | " + " | ".join(f"**{fmt(v)}**" if i in best else fmt(v)
                                                     for i, v in enumerate(values)) + " |\n"
                   for label, values, best in table_rows(results, methods))
    return (f"{caption}\n\n" if caption else "") + head + body


def print_table(results: dict[str, dict], methods: Sequence[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("Metric", no_wrap=True)
    names = [DISPLAY_NAMES.get(m, m) for m in methods]
    for name in names:
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    for label, values, best in table_rows(results, methods):
        cells = (f"[bold green]{fmt(v)}[/]" if i in best else fmt(v) for i, v in enumerate(values))
        table.add_row(label, *cells)
    console = Console()
    needed = 10 + sum(len(n) + 3 for n in names)  # full method names even on a narrow terminal or a log file
    console.width = max(console.width, needed)
    console.print(table)


def metrics_of(results: dict[str, dict]) -> dict:
    """The entries of metrics.json: `xai/<method>/<metric>` floats (macro, percent), micro and per-class
    dicts."""
    out: dict = {}
    for m, r in results.items():
        out.update({f"xai/{m}/{k}": float(v) for k, v in r["macro"].items()})
        out[f"xai/{m}/micro"] = r["micro"]
        out[f"xai/{m}/per_class"] = r["per_class"]
    out["xai/pairs"] = {m: int(sum(r["pairs"].values())) for m, r in results.items()}
    out["xai/method_seconds"] = {m: float(r["seconds"]) for m, r in results.items()}
    return out



def log_results(loggers, metrics: dict, results: dict, methods: Sequence[str], images: dict) -> None:
    """Scalars to every logger; the table (a W&B Table) and the figure (a W&B Image) where supported."""
    from wsss.logging_utils import log_images, log_scalars, log_table

    loggers = [lg for lg in loggers if lg is not None]
    if not loggers:
        return
    log_scalars(loggers, {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)})
    rows = [[label, *(round(v, 4) if math.isfinite(v) else None for v in values)]
            for label, values, _ in table_rows(results, methods)]
    log_table(loggers, "xai/table", ["metric", *(DISPLAY_NAMES.get(m, m) for m in methods)], rows)
    if images:
        log_images(loggers, images)
    for lg in loggers:
        lg.save()
