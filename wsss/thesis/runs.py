"""What a finished run folder says about itself, for the thesis report: its resolved configuration
(config.yaml), its command line (run.json: the recipe is its `experiment=`), its numbers (metrics.json) and
the run folders whose artifacts it read (the `inputs` of the producers its artifact manifests record)."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from wsss.artifacts import MANIFEST, read_manifest, run_folder_of


@dataclass
class Run:
    folder: Path
    config: dict                      # config.yaml: the resolved configuration
    overrides: list[str]              # run.json: the command line
    metrics: dict                     # metrics.json ({} before the run finished)
    inputs: dict[str, Path] = field(default_factory=dict)  # artifact kind read -> the run that wrote it

    @property
    def stage(self) -> str:
        return self.config["stage"]["name"]

    @property
    def recipe(self) -> str | None:
        """The `experiment=` the run was started with (the last one when the command line has several)."""
        given = [o.partition("=")[2] for o in self.overrides if o.lstrip("+").startswith("experiment=")]
        return given[-1] if given else None


def read_run(folder: str | Path) -> Run:
    folder = Path(folder)
    from omegaconf import OmegaConf

    for name in ("run.json", "config.yaml"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: not a run folder (run.py writes run.json and "
                                    "config.yaml when a run starts)")
    info = json.loads((folder / "run.json").read_text())
    config = OmegaConf.to_container(OmegaConf.load(folder / "config.yaml"))
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return Run(folder, config, list(info.get("overrides") or []), metrics, recorded_inputs(folder))


def recorded_inputs(folder: Path) -> dict[str, Path]:
    """{artifact kind: the run folder that wrote it} over the input folders the run's manifests record."""
    out: dict[str, Path] = {}
    for manifest in sorted(folder.glob(f"*/*/{MANIFEST}")):
        producer = read_manifest(manifest).get("producer") or {}
        for path in producer.get("inputs") or {}:
            writer = run_folder_of(path)
            if writer is not None and writer.resolve() != folder.resolve():
                out[Path(path).name] = writer
    return out


def find_runs(root: str | Path) -> list[Run]:
    """The runs of a pipeline folder (its pipeline.json, in step order) or every run folder under `root`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (give a runs folder or a pipeline folder)")
    steps = root / "pipeline.json"
    if steps.is_file():
        folders = [Path(s["run_dir"]) for s in json.loads(steps.read_text())]
        return [read_run(f) for f in folders if (f / "run.json").is_file()]
    return [read_run(p.parent) for p in sorted(root.rglob("run.json"))]


MONITORED = "monitor/train_cam_miou"   # wsss.cams.monitor.METRIC, logged once per epoch by the CAM stages


def monitored_epochs(folder: Path) -> list[float]:
    """The monitored train CAM mIoU of every epoch, from the run's CSV log (logs/metrics.csv)."""
    path = Path(folder) / "logs" / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get(MONITORED)]
    by_epoch = {int(r["epoch"]): float(r[MONITORED]) for r in rows}  # a resumed epoch: its last value
    return [by_epoch[e] for e in sorted(by_epoch)]
