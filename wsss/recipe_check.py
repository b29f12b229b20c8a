"""A data set typed on the command line against an experiment that names another one.

`dataset=voc12` beats an experiment's `override /dataset: ...`, but the rest of the recipe (its epochs, lr,
crop sizes, run name, ...) still applies, tuned for the experiment's own data set. The run goes on (that can
be what the user wants, e.g. the synthetic settings on a small VOC-layout set) and is told which values it
keeps."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

MAX_LISTED = 12


def experiment_files(experiment: str, conf_dir: Path) -> list[Path]:
    """The experiment's file and those of the experiments it includes (`- <other>` in its defaults)."""
    path = Path(conf_dir) / "experiment" / f"{experiment}.yaml"
    if not path.is_file():
        return []
    files = [path]
    for entry in OmegaConf.load(path).get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_" and not entry.startswith("/"):
            files += experiment_files(entry, conf_dir)
    return files


def recipe_dataset(files: list[Path]) -> str | None:
    """The data set the experiment selects (`override /dataset: <name>`), the first file's first."""
    for path in files:
        for entry in OmegaConf.load(path).get("defaults") or []:
            if not isinstance(entry, str) and "override /dataset" in entry:
                return str(entry["override /dataset"])
    return None


def recipe_values(files: list[Path]) -> list[str]:
    """`key=value` for every value the experiment files set (their defaults lists aside), as written."""
    values: dict[str, str] = {}
    for path in reversed(files):  # an including file's values after those it includes
        recipe = OmegaConf.load(path)
        recipe.pop("defaults", None)
        for key, value in flatten(OmegaConf.to_container(recipe, resolve=False)).items():
            values[key] = value
    return [f"{key}={value}" for key, value in values.items()]


def flatten(node, prefix: str = "") -> dict[str, str]:
    if not isinstance(node, dict):
        return {prefix: str(node).replace(" ", "")}
    flat: dict[str, str] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def contradicted_dataset(experiment: str | None, dataset: str | None, task_overrides: list[str],
                         conf_dir: Path) -> str | None:
    """The warning for a `dataset=` on the command line that differs from the experiment's, else None."""
    typed = [o.split("=", 1)[1] for o in task_overrides if o.split("=", 1)[0].lstrip("+~") == "dataset"]
    if not experiment or not typed or typed[-1] != dataset:
        return None
    files = experiment_files(experiment, conf_dir)
    own = recipe_dataset(files)
    if own is None or own == dataset:
        return None
    kept = recipe_values(files)
    listed = ", ".join(kept[:MAX_LISTED]) + (f", ... ({len(kept) - MAX_LISTED} more)" if len(kept) > MAX_LISTED
                                               else "")
    return (f"dataset={dataset} on the command line replaces experiment={experiment}'s data set ({own}); "
            f"the rest of that recipe still applies, tuned for {own}: {listed} "
            f"(conf/experiment/{experiment}.yaml; conf/experiment_stage/{experiment}/ per stage). "
            f"Override those values too, or leave out experiment={experiment} for the stage's own defaults.")
