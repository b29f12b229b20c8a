"""The thesis beside what was run: every run folder that reproduces a row of the thesis's Tables 2-10
(wsss/thesis/rows.py), the published values beside ours, and the settings by which the run departs from
its recipe (wsss/thesis/deviations.py). It only reads finished runs:

    python -m wsss.thesis <runs folder or pipeline folder>

writes `thesis.md` and `thesis.json` into that folder and prints the tables; a pipeline writes them into its
own folder after its last step, and its summary.md gets the same section. Values are percentages, as
printed in the thesis; `ours − thesis` in points.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from wsss.artifacts import atomic_write_json, atomic_write_text
from wsss.thesis import value
from wsss.thesis.deviations import departures, recipe_config
from wsss.thesis.rows import Cell, Match, Matcher
from wsss.thesis.runs import Run, find_runs, monitored_epochs

log = logging.getLogger(__name__)


@dataclass
class Line:
    table: int
    row: str
    column: str
    thesis: float | None    # percent
    ours: float | None      # percent


@dataclass
class Section:
    run: Run
    rows: list[tuple[int, str]]
    lines: list[Line]
    departures: list[str]
    recipe: list[str]       # the command line of the recipe it departs from
    heading: str | None     # the rows as the heading names them


def ours(run: Run, cell: Cell) -> float | None:
    """Our value (percent) of a cell's metric: a metrics.json key, a path into its nested values
    (`cams/train/iou/cat`), or `epochs/<n>` / `epochs/max` (the monitored per-epoch CAM mIoU)."""
    metric = cell.metric
    if metric is None:
        return None
    if metric.startswith("epochs/"):
        epochs = monitored_epochs(run.folder)
        which = metric.removeprefix("epochs/")
        got = max(epochs) if which == "max" and epochs else (epochs[int(which) - 1] if which != "max"
                                                             and int(which) <= len(epochs) else None)
        return None if got is None else 100 * got
    got = lookup(run.metrics, metric)
    return None if got is None else cell.scale * float(got)


def lookup(metrics: dict, key: str):
    """metrics[key], or a value inside a nested one (keys hold slashes: the longest key present is taken)."""
    if key in metrics:
        return metrics[key]
    parts = key.split("/")
    for cut in range(len(parts) - 1, 0, -1):
        inner = metrics.get("/".join(parts[:cut]))
        if isinstance(inner, dict):
            return lookup(inner, "/".join(parts[cut:]))
    return None


def section(match: Match) -> Section:
    lines = [Line(c.table, c.row, c.column, value(c.table, c.row, c.column), ours(match.run, c))
             for c in match.cells]
    epochs_run = [x for x in lines if x.ours is not None or not x.column.startswith("E")]
    lines = [x for x in epochs_run if x.thesis is not None]
    departed = departures(match.run.config, recipe_config(recipe_command(match.run, match.recipe)))
    for role, run in match.upstream.items():
        departed += [f"{role}: {d}" for d in departures(run.config, recipe_config(recipe_command(run)))]
    return Section(match.run, match.rows, lines, departed, recipe_command(match.run, match.recipe),
                   match.heading)


def recipe_command(run: Run, given: list[str] | None = None) -> list[str]:
    return given or [f"stage={run.stage}", f"experiment={run.recipe}"]


def build(runs: list[Run]) -> tuple[list[Section], list[Match]]:
    """The sections of the runs that reproduce a row, and the recipe runs that do not (with why)."""
    matcher = Matcher()
    matched = [matcher.match(r) for r in runs]
    return [section(m) for m in matched if m.cells], [m for m in matched if m.why_not]


def cell(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.1f}"   # None: no such number; nan: no pixel of the class


def markdown(sections: list[Section], unmatched: list[Match]) -> str:
    out = ["## The thesis beside these runs", ""]
    if not sections:
        out.append("No run here reproduces a row of the thesis's Tables 2-10 (their recipes are the "
                   "conf/experiment/voc12_* and xai_* files; `pipeline=wsss experiment=voc12_rs269` runs the "
                   "first).")
    for s in sections:
        rows = s.heading or ", ".join(f'Table {t} "{r}"' for t, r in s.rows if t != 8) or "Table 8"
        recipe = " ".join(c for c in s.recipe if not c.startswith("stage="))
        out += [f"### {s.run.stage} · {recipe}: {rows}", "",
                f"Run folder: `{s.run.folder}`", ""]
        if s.departures:
            out += ["Departs from its recipe by:", "", *(f"- {d}" for d in s.departures), ""]
        else:
            out += ["Departs from its recipe by: nothing (the recipe as published).", ""]
        out += ["| table | row | column | thesis | ours | ours − thesis |", "|---|---|---|---|---|---|"]
        for x in s.lines:
            diff = cell(x.ours - x.thesis) if x.ours is not None else "-"
            out.append(f"| {x.table} | {x.row} | {x.column} | {cell(x.thesis)} | {cell(x.ours)} | {diff} |")
        out.append("")
    for m in unmatched:
        out.append(f"- `{m.run.folder}` (experiment={m.run.recipe}): no thesis row: {m.why_not}")
    return "\n".join(out).rstrip() + "\n"


def as_json(sections: list[Section], unmatched: list[Match]) -> dict:
    return {"runs": [{"run_dir": str(s.run.folder), "stage": s.run.stage, "recipe": s.run.recipe,
                      "recipe_command": s.recipe,
                      "rows": [{"table": t, "row": r} for t, r in s.rows], "departures": s.departures,
                      "values": [vars(x) for x in s.lines]} for s in sections],
            "unmatched": [{"run_dir": str(m.run.folder), "recipe": m.run.recipe, "why": m.why_not}
                          for m in unmatched]}


def write_report(runs: list[Run], out_dir: str | Path) -> str:
    """thesis.md and thesis.json in `out_dir`; returns the markdown."""
    sections, unmatched = build(runs)
    text = markdown(sections, unmatched)
    atomic_write_text(Path(out_dir) / "thesis.md", text)
    atomic_write_json(Path(out_dir) / "thesis.json", as_json(sections, unmatched))
    log.info("thesis report: %d run(s) beside a thesis row: %s", len(sections), Path(out_dir) / "thesis.md")
    return text


def report_folder(folder: str | Path) -> str:
    """The report over the runs of a runs folder or a pipeline folder, written into it."""
    return write_report(find_runs(folder), folder)
