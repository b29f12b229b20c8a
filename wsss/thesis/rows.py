"""Which thesis row a run reproduces: the recipe it was started with (its `experiment=`) and, for the stages
that read other runs' artifacts, the rows of the runs that wrote them (the producers its manifests record).

- CAM generators (Tables 7 and 8): the voc12_rs269 classifier and the voc12_rs269_{p,pf,poc,poc_ls,pnoc_ls}
  recipes, one generator each (RA, P, Pf, P-OC, P-OC+LS, P-NOC+LS); mIoU on VOC12 train with TTA.
- C²AM-H saliency (Table 9): voc12_ccamh_rs269 (column P, the prior) with hints from a Table 7 generator, and
  voc12_poolnet_rn50 (column R, refined) trained on such a run's pseudo saliency; rows `cams=GT` (classes
  from the ground truth) and `cams=<generator>` (classes from the CAMs of `stage.evaluation.cams`).
- Pseudo masks (Table 10): voc12_affinity_rs269 on a generator's CAMs, with or without the saliency of a
  Table 9 run (the `+C2AM-H` rows; P-NOC's CAMs are the `+NOC` rows).
- DeepLab (Table 2): voc12_deeplab_rs269 on the pseudo masks of a `+C2AM-H` Table 10 run; the test column is
  the evaluation server's, which no run here scores.
- The XAI benchmark's classifiers (Table 5): an `xai_*` recipe's classifier, its validation F-score (F2 on
  P:UAS); column `baseline`, or `KUR` with α = 1.
- The XAI benchmark (Tables 3, 4 and 6): an `xai` run explaining the classifier of an `xai_<data set>_<net>`
  recipe (the run beside its `stage.checkpoint`); its recipe is the documented command `stage=xai
  dataset=<data set> backbone=<net> stage.split=<the split the thesis explains>`, and the classifier's
  departures from its own recipe are the row's too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wsss.artifacts import run_folder_of
from wsss.thesis import CLASSIFIER_ROWS, XAI_METHODS, XAI_METRICS, XAI_SPLITS, kur_variant, xai_table
from wsss.thesis.runs import Run, read_run

#: (recipe, stage) -> the generator's name in Tables 7 and 8
CAM_GENERATORS = {("voc12_rs269", "classifier"): "RA", ("voc12_rs269_p", "puzzle"): "P",
                  ("voc12_rs269_pf", "puzzle"): "Pf", ("voc12_rs269_poc", "poc"): "P-OC",
                  ("voc12_rs269_poc_ls", "poc"): "P-OC+LS", ("voc12_rs269_pnoc_ls", "pnoc"): "P-NOC+LS",
                  ("voc12_rs269_pnoc_ls_leak", "pnoc"): "P-NOC+LS"}
CAM_STAGES = ("classifier", "puzzle", "poc", "pnoc")
SALIENCY_RECIPES = {("voc12_ccamh_rs269", "ccam"): "P", ("voc12_poolnet_rn50", "saliency"): "R"}
AFFINITY_RECIPE = ("voc12_affinity_rs269", "affinity")
DEEPLAB_RECIPE = ("voc12_deeplab_rs269", "deeplab")
#: Table 10's row by the generator of the CAMs, without and with a Table 9 saliency
PSEUDO_MASK_ROWS = {
    False: {"P": "P", "Pf": "Pf", "P-OC": "P-OC", "P-OC+LS": "P-OC+LS", "P-NOC+LS": "P-OC+LS+NOC"},
    True: {"P-OC": "P-OC+C2AM-H", "P-OC+LS": "P-OC+LS+C2AM-H", "P-NOC+LS": "P-OC+LS+C2AM-H+NOC"},
}
#: Table 2's row by the Table 10 row of the pseudo masks
SEGMENTATION_ROWS = {"P-OC+C2AM-H": "P-OC+C2AM-H", "P-OC+LS+C2AM-H+NOC": "P-NOC+LS+C2AM-H"}
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")


@dataclass(frozen=True)
class Cell:
    table: int
    row: str
    column: str
    metric: str | None   # our metrics.json key (a `/`-path into nested values); None: no run here scores it
    scale: float = 100.0  # ours in percent: the metric × scale (the xai stage logs percentages already)


@dataclass
class Match:
    run: Run
    cells: list[Cell] = field(default_factory=list)
    why_not: str | None = None   # a recipe run whose inputs reproduce no row: why
    name: str | None = None      # the generator (Tables 7-8), the Table 9 row stem, or the Table 10 row
    recipe: list[str] | None = None   # the recipe's command line; None: `stage=<stage> experiment=<recipe>`
    upstream: dict[str, Run] = field(default_factory=dict)   # runs whose departures are the row's too
    heading: str | None = None   # its rows as a report's heading names them; None: each (table, row)

    @property
    def rows(self) -> list[tuple[int, str]]:
        return list(dict.fromkeys((c.table, c.row) for c in self.cells))


class Matcher:
    """Matches runs to rows; the producers of a run's inputs are read (once) when it is matched."""

    def __init__(self):
        self.matches: dict[Path, Match] = {}

    def match(self, run: Run) -> Match:
        key = run.folder.resolve()
        if key not in self.matches:
            self.matches[key] = self._match(run)
        return self.matches[key]

    def producer(self, run: Run, kind: str) -> Match | None:
        folder = run.inputs.get(kind)
        return self.match(read_run(folder)) if folder else None

    def _match(self, run: Run) -> Match:
        recipe = (run.recipe, run.stage)
        if recipe in CAM_GENERATORS:
            return cam_generator(run, CAM_GENERATORS[recipe])
        if recipe in SALIENCY_RECIPES:
            return self.saliency(run, SALIENCY_RECIPES[recipe])
        if recipe == AFFINITY_RECIPE:
            return self.pseudo_masks(run)
        if recipe == DEEPLAB_RECIPE:
            return self.segmentation(run)
        if (run.recipe or "").startswith("xai_") and run.stage == "classifier":
            return classifier_scores(run)
        if run.stage == "xai":
            return explained(run)
        return Match(run)

    def saliency(self, run: Run, column: str) -> Match:
        if column == "P":
            hints = self.producer(run, "cams")
            if hints is None or hints.run.stage not in CAM_STAGES or not hints.name:
                return Match(run, why_not=f"its hints ({run.inputs.get('cams')}) reproduce no Table 7 row")
            stem = f"C2AM-H RS269 hints=RS269 {hints.name}"
        else:
            prior = self.producer(run, "pseudo_saliency")
            if prior is None or not prior.name or prior.run.stage != "ccam":
                source = run.inputs.get("pseudo_saliency")
                return Match(run, why_not=f"its pseudo saliency ({source}) comes from no Table 9 C²AM-H run")
            stem = prior.name
        cells = [Cell(9, f"{stem} cams=GT", column, "saliency/train/class_miou")]
        evaluated = (run.config["stage"].get("evaluation") or {}).get("cams")
        generator = self.generator_of(evaluated)
        if generator:
            cells.append(Cell(9, f"{stem} cams=RS269 {generator}", column, "saliency/train/cam_miou"))
        return Match(run, cells, name=stem)

    def generator_of(self, folder) -> str | None:
        writer = run_folder_of(folder) if isinstance(folder, str) else None
        return self.match(read_run(writer)).name if writer and (writer / "config.yaml").is_file() else None

    def pseudo_masks(self, run: Run) -> Match:
        cams = self.producer(run, "cams")
        saliency = self.producer(run, "saliency")
        with_saliency = saliency is not None and any(c.table == 9 for c in saliency.cells)
        row = PSEUDO_MASK_ROWS[with_saliency].get(cams.name if cams and cams.run.stage != "ccam" else None)
        if row is None:
            what = "with" if with_saliency else "without"
            return Match(run, why_not=f"CAMs of {run.inputs.get('cams')} {what} a Table 9 saliency: no row")
        return Match(run, [Cell(10, row, split, f"pseudo_masks/{split}/miou") for split in ("train", "val")],
                     name=row)

    def segmentation(self, run: Run) -> Match:
        masks = self.producer(run, "pseudo_masks")
        row = SEGMENTATION_ROWS.get(masks.name) if masks and masks.run.stage == "affinity" else None
        if row is None:
            return Match(run, why_not=f"its pseudo masks ({run.inputs.get('pseudo_masks')}): no Table 2 row")
        return Match(run, [Cell(2, row, "val", "predictions/val/miou"), Cell(2, row, "test", None)], name=row)


def cam_generator(run: Run, name: str) -> Match:
    """Table 7 (per-epoch monitored mIoU, its maximum, TTA) and Table 8 (IoU per class) of one generator."""
    cells = [Cell(7, f"RS269 {name}", f"E{e}", f"epochs/{e}") for e in range(1, 16)]
    cells += [Cell(7, f"RS269 {name}", "Max", "epochs/max"),
              Cell(7, f"RS269 {name}", "TTA", "cams/train/miou")]
    cells += [Cell(8, c, name, f"cams/train/iou/{c}") for c in VOC_CLASSES]
    cells.append(Cell(8, "overall", name, "cams/train/miou"))
    return Match(run, cells, name=name)


def classifier_scores(run: Run) -> Match:
    """Table 5: the validation F-score of an `xai_*` recipe's classifier (ours: the macro average at 0.5; the
    thesis does not say which average it used)."""
    d, kur = run.config["dataset"], run.config["stage"].get("kur") or {}
    row = CLASSIFIER_ROWS.get((d.get("name"), d.get("val_split")))
    variant = kur_variant(bool(kur.get("enabled")), kur.get("alpha", 1.0))   # α = num_classes: no column
    if row is None or variant is None:
        return Match(run, why_not=f"Table 5 has no row for {d.get('name')} {d.get('val_split')}, this KUR")
    return Match(run, [Cell(5, row[0], variant, f"val/{row[1]}")], name=row[0])


def explained(run: Run) -> Match:
    """Table 3, 4 or 6 of an `xai` run: the row of the data set or net of its classifier's `xai_*` recipe, one
    column per method the thesis reports (CAM, Grad-CAM++, Score-CAM, MinMax-CAM, D-MinMax-CAM)."""
    writer = run_folder_of(run.config["stage"]["checkpoint"])
    classifier = read_run(writer) if writer else None
    recipe = classifier.recipe if classifier else None
    if classifier is None or classifier.stage != "classifier" or not (recipe or "").startswith("xai_"):
        return Match(run)   # not the classifier of an `xai_*` recipe: no thesis row, nothing to say
    dataset, _, architecture = recipe.removeprefix("xai_").partition("_")
    kur = classifier.config["stage"].get("kur") or {}
    source = xai_table(dataset, architecture, bool(kur.get("enabled")), kur.get("alpha", 1.0))
    if source is None:
        return Match(run, why_not=f"its classifier ({writer}, experiment={recipe}, KUR {kur}) is in no Table "
                                  "3, 4 or 6 (KUR only with RN101 and α = 1)")
    table, part = source
    methods = [m for m in run.config["stage"]["methods"] if m in XAI_METHODS]
    cells = [Cell(table, f"{label} {part}", XAI_METHODS[m], f"xai/{m}/{key}", scale=1.0)
             for key, label in XAI_METRICS.items() for m in methods]
    command = ["stage=xai", f"dataset={dataset}", f"backbone={architecture}",
               f"stage.split={XAI_SPLITS[dataset]}"]
    return Match(run, cells, name=part, recipe=command, heading=f'Table {table} "{part}"',
                 upstream={f"classifier (experiment={recipe})": classifier})
