"""What a stage declares about itself in its own file, read by the task runner, the data scan and the
pipeline.

A stage class (wsss/stages/) sets:
- `tasks`: {name: Task}, every task `tasks=[...]` may name for it (nothing is registered anywhere else);
- `default_tasks`: the names `run.py` runs when `tasks` is not given;
- `artifact`: the `Artifact` its `predict_step` writes into `self.writer` (None: it writes none);
- `not_output_keys`: its stage keys that change none of its artifacts (the options of later tasks that have
  their own identity), besides the common ones of wsss/identity.py.

A `Task` is a function of the run's Context, the data it reads (which splits the scan checks before any task
runs: `FIT` the training and validation splits, `PREDICT` the predicted ones, `EVALUATE` the evaluated ones,
`EXPLAIN` the XAI split) and the artifact folders it writes (the pipeline's disk estimate).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

FIT, PREDICT, EVALUATE, EXPLAIN = "fit", "predict", "evaluate", "explain"
OWN = "own"   # `Task.writes` entry: the stage's own `artifact`


@dataclass(frozen=True)
class Artifact:
    """A kind of per-image artifact folder: `<run folder>/<kind>/<split>/<id><suffix>` + manifest.json."""
    kind: str
    suffix: str = ".npz"
    splits_key: str | None = None   # stage key (dotted) listing its splits, when it has one
    default_splits: str = "predict"  # without that key: the predicted splits, or "train" (the training split)

    def splits(self, plain: dict) -> list[str]:
        """The splits a run of `plain` writes this artifact for."""
        node = plain["stage"]
        for part in (self.splits_key or "").split(".") if self.splits_key else []:
            node = node.get(part) if isinstance(node, dict) else None
        if node and self.splits_key:
            return list(node)
        if self.default_splits == "train":
            return [plain["dataset"]["train_split"]]
        return list(plain["stage"].get("predict_splits") or plain["dataset"]["predict_splits"])


@dataclass(frozen=True)
class Task:
    run: Callable[..., dict | None]           # run(ctx) -> metrics
    reads: tuple[str, ...] = ()               # FIT, PREDICT, EVALUATE, EXPLAIN
    writes: tuple[Artifact | str, ...] = ()   # Artifact, or OWN for the stage's own artifact


def written_artifacts(stage_cls, task_names: list[str]) -> list[Artifact]:
    """The artifact kinds the named tasks of `stage_cls` write, each once, in task order."""
    out: list[Artifact] = []
    for name in task_names:
        for a in stage_cls.tasks[name].writes:
            a = stage_cls.artifact if a == OWN else a
            if a is not None and a not in out:
                out.append(a)
    return out


def data_read(stage_cls, task_names: list[str]) -> list[str]:
    """What data the named tasks of `stage_cls` read (FIT, PREDICT, ...), each once."""
    return list(dict.fromkeys(r for name in task_names for r in stage_cls.tasks[name].reads))


def checked_task_names(stage_cls, plain: dict) -> list[str]:
    """The tasks this run runs (`tasks`, else `stage.tasks`, else the stage's defaults), each one the stage
    declares; an unknown name is refused with the list of the stage's tasks."""
    names = list(plain.get("tasks") or plain["stage"].get("tasks") or stage_cls.default_tasks)
    unknown = [t for t in names if t not in stage_cls.tasks]
    if unknown:
        raise ValueError(f"tasks={names}: stage {plain['stage'].get('name')!r} has no task {unknown}; its "
                         f"tasks are {sorted(stage_cls.tasks)}")
    return names
