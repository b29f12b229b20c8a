"""Reports a pipeline writes from its finished runs (the thesis's analyses), named in its pipeline file:

    pipeline:
      reports:
        - {_target_: wsss.reports.cam_generators.write_report, split: train}

Each target is called as `target(steps=..., out_dir=..., cfg=..., **the other keys)` after the last step,
also when every step was up to date. A report only reads the runs' outputs.
"""
from __future__ import annotations

from pathlib import Path

from hydra.utils import get_method


def write_reports(specs: list[dict] | None, steps, out_dir: Path, cfg: dict) -> None:
    for spec in specs or []:
        kwargs = dict(spec)
        target = kwargs.pop("_target_", None)
        if not target:
            raise ValueError(f"pipeline.reports entry {spec!r} has no _target_ naming the report function")
        get_method(target)(steps=steps, out_dir=Path(out_dir), cfg=cfg, **kwargs)
