"""Whether a run folder holds a finished run of a configuration: the rule by which a pipeline skips a step
and a repeated `python run.py ...` prints its recorded metrics instead of running again.

run.py writes config.yaml when a run starts and metrics.json after its last task (after the artifact
manifests), so a metrics.json newer than config.yaml, and a config.yaml equal to this configuration (trainer,
logger, paths and num_workers aside), mean the run finished with it; every artifact manifest must still match
its producer (`wsss.artifacts.stale_reason`, the rule a predict applies before writing). Light on imports:
no Lightning, so that an up-to-date command answers in about a second.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from wsss.artifacts import MANIFEST, ArtifactDir, config_hash, stale_reason
from wsss.identity import comparable


def why_not_finished(run_dir: Path, plain: dict, check_config: bool = True) -> str | None:
    """None when `run_dir` holds a finished run of the resolved config `plain`, else the reason."""
    cfg_file, metrics_file = run_dir / "config.yaml", run_dir / "metrics.json"
    if not metrics_file.is_file() or not cfg_file.is_file():
        return "not run yet" if not cfg_file.is_file() else "not finished"
    if metrics_file.stat().st_mtime_ns < cfg_file.stat().st_mtime_ns:
        return "a later run of it did not finish"
    if check_config:
        saved = OmegaConf.to_container(OmegaConf.load(cfg_file), resolve=False)
        if config_hash(comparable(saved)) != config_hash(comparable(plain)):
            from wsss.config_diff import differences

            return "its configuration changed: " + "; ".join(differences(comparable(saved), comparable(plain)))
    return stale_artifacts(run_dir)


def stale_artifacts(run_dir: Path) -> str | None:
    """Why an artifact folder of the run no longer matches its producer (same rule as a predict's), or None."""
    for manifest in sorted(run_dir.glob(f"*/*/{MANIFEST}")):
        reason = stale_reason(ArtifactDir(manifest.parent, ""))
        if reason:
            return reason
    return None
