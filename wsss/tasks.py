"""Runs a stage's tasks (fit, predict, evaluate) on one Lightning Trainer."""
from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytorch_lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.strategies import DDPStrategy

from wsss import learned
from wsss.artifacts import ArtifactDir, atomic_write_json, atomic_write_text, open_split
from wsss.callbacks import chosen_callbacks
from wsss.data.scan import scan_for_run
from wsss.fill import finish
from wsss.identity import producer_identity, training_fields, training_identity
from wsss.reliability import AtomicCheckpointIO, check_disk_for_predict, reliability_callbacks
from wsss.reliability.history import merge_metrics, new_invocation
from wsss.reliability.run_lock import hold_run_folder, is_launch_rank_zero
from wsss.reliability.signals import stop_on_signal
from wsss.stage_contract import EVALUATE, FIT, OWN, PREDICT, Task, checked_task_names, data_read

log = logging.getLogger(__name__)

def command_overrides(plain: dict) -> list[str]:
    """The command line of this run (Hydra's task overrides), or the keys that name its run folder."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    return [f"stage={plain['stage']['name']}", f"dataset={plain['dataset']['name']}",
            f"backbone={plain['backbone']['name']}", f"run_name={plain.get('run_name')}"]


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[1]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def changed_keys(saved: Path, plain: dict) -> str:
    from wsss.config_diff import differences

    if not saved.is_file():
        return f"unknown ({saved} is missing)"
    old = OmegaConf.to_container(OmegaConf.load(saved), resolve=False)
    return "; ".join(differences(training_fields(old), training_fields(plain))) or "none of the saved ones"


def record_run(cfg: DictConfig, plain: dict, run_dir: Path) -> None:
    """Saves the resolved config and the commit; refuses to resume a run of another config."""
    ident = training_identity(plain)
    info_path = run_dir / "run.json"
    if info_path.is_file():
        old = json.loads(info_path.read_text())
        if old.get("identity") != ident and (run_dir / "checkpoints").is_dir():
            from wsss.user_errors import RunFolderConflict

            raise RunFolderConflict(
                f"{run_dir} holds a run of a different configuration (see {run_dir / 'config.yaml'}); "
                f"resuming it would mix two experiments. Keys that differ (that run → this one): "
                f"{changed_keys(run_dir / 'config.yaml', plain)}. Pick another run_name=..., or delete that "
                "folder.")
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    atomic_write_json(info_path, {"identity": ident, "commit": git_commit(), "stage": plain["stage"]["name"],
                                  "dataset": plain["dataset"]["name"], "backbone": plain["backbone"]["name"],
                                  "overrides": command_overrides(plain),
                                  "predict_splits": list(plain["stage"].get("predict_splits")
                                                         or plain["dataset"].get("predict_splits") or [])})


# -- trainer ----------------------------------------------------------------------------------------
def build_trainer(cfg: dict, module: L.LightningModule, run_dir: Path) -> L.Trainer:
    t = dict(cfg["trainer"])
    strategy = t.pop("strategy", "auto")
    backend = t.pop("process_group_backend", None)  # +trainer.process_group_backend=gloo: ranks sharing a GPU
    if strategy == "ddp":
        strategy = DDPStrategy(find_unused_parameters=bool(module.scfg.get("find_unused_parameters", False)),
                               process_group_backend=backend)
    loggers = [instantiate(spec) for spec in (cfg.get("logger") or {}).values() if spec and "_target_" in spec]
    callbacks = chosen_callbacks(cfg)  # the callbacks group (conf/callbacks/)
    if module.scfg.get("max_steps"):  # a budget in optimiser steps, whatever the set's size (max_epochs: null)
        t.setdefault("max_steps", int(module.scfg["max_steps"]))
        t.setdefault("max_epochs", -1 if module.scfg.get("max_epochs") is None else module.scfg["max_epochs"])
    t.setdefault("max_epochs", module.scfg.get("max_epochs"))
    callbacks += reliability_callbacks(cfg, run_dir)  # always: last.ckpt, signals, RNG states, NaN guard
    return L.Trainer(default_root_dir=run_dir, strategy=strategy, logger=loggers or False, callbacks=callbacks,
                     plugins=[AtomicCheckpointIO()], **t)


def last_checkpoint(run_dir: Path) -> Path | None:
    p = run_dir / "checkpoints" / "last.ckpt"
    return p if p.is_file() else None


def kept_checkpoint(plain: dict, run_dir: Path) -> Path | None:
    """The fitted weights a run predicts with: its best.ckpt when the stage keeps its best validation epoch
    (`stage.keep_best`, DeepLab) and one was written, else its last.ckpt."""
    if plain["stage"].get("keep_best"):
        best = run_dir / "checkpoints" / "best.ckpt"
        if best.is_file():
            return best
        log.warning("stage.keep_best is set but %s was not written (no validation split?): using last.ckpt", best)
    return last_checkpoint(run_dir)


# -- tasks ------------------------------------------------------------------------------------------
def fit(ctx: "Context") -> dict:
    own_last = ctx.cfg.ckpt_path == "last"
    ckpt = last_checkpoint(ctx.run_dir) if own_last else ctx.cfg.ckpt_path
    if ckpt:  # read (weights only) and its names and shapes checked before Lightning restores it
        check_resumable(ctx, ckpt, own_last)
    if ckpt:
        log.info("resuming from %s", ckpt)
    if ctx.trainer.is_global_zero:
        learned.forget(ctx.run_dir)  # the verdict of an earlier fit in this folder no longer holds
    ctx.trainer.fit(ctx.module, datamodule=ctx.dm, ckpt_path=ckpt)
    ctx.trained = True
    ctx.weights = kept_checkpoint(ctx.plain, ctx.run_dir)  # last.ckpt: the weights in memory
    if ctx.weights is not None and ctx.weights.name == "best.ckpt":
        ctx.module.load_weights(ctx.weights)
    metrics = {k: float(v) for k, v in ctx.trainer.callback_metrics.items() if v.numel() == 1}
    return metrics


def check_resumable(ctx: "Context", ckpt: str | Path, own_last: bool) -> None:
    from wsss.models.checkpoints import check_fits, load_checkpoint, state_dict_of

    try:
        state = state_dict_of(load_checkpoint(ckpt, "ckpt_path", mmap=True))
        check_fits(ctx.module, state, ckpt, "ckpt_path", ctx.plain["backbone"]["name"])
    except ValueError as e:
        if not own_last or "ckpt_path=null" in str(e):
            raise
        raise ValueError(f"{e} It is this run folder's last.ckpt: delete it to start this run over, or run "
                         "with ckpt_path=null.") from e


def ensure_weights(ctx: "Context") -> None:
    """Predicting without fitting in this process: load the stage checkpoint or this run's last one."""
    if ctx.trained:
        return
    ckpt = ctx.module.scfg.checkpoint or kept_checkpoint(ctx.plain, ctx.run_dir)
    if ckpt:
        ctx.module.load_weights(ckpt)
        ctx.weights = Path(ckpt)
        log.info("loaded weights from %s", ckpt)
    else:
        log.warning("no checkpoint for %s: predicting with untrained (or ImageNet-initialised) weights",
                    ctx.run_dir)
        ctx.weights = None
    ctx.trained = True


def artifact_dir(ctx: "Context", split: str) -> ArtifactDir:
    """The folder this run writes its artifacts of `split` to."""
    return ArtifactDir(ctx.run_dir / ctx.module.artifact.kind / split, ctx.module.artifact.suffix)


def own_artifacts(ctx: "Context", split: str, kind: str | None = None, suffix: str | None = None) -> ArtifactDir:
    """This run's finished artifacts of `split` (its own folder, or a predicted split holding all its ids)."""
    kind = kind or ctx.module.artifact.kind
    suffix = suffix or ctx.module.artifact.suffix
    return open_split(ctx.run_dir / kind, split, ctx.dm.split(split).ids, suffix, ctx.plain["dataset"]["name"])


def predict(ctx: "Context") -> dict:
    ensure_weights(ctx)
    out = {}
    for split in ctx.predict_splits():
        count = predict_missing(ctx, artifact_dir(ctx, split), split, num_classes=ctx.module.num_classes)
        out[f"{ctx.module.artifact.kind}/{split}/count"] = count
    return out


def predict_missing(ctx: "Context", writer: ArtifactDir, split: str, **manifest_extra) -> int:
    """Write the stage's artifacts of `split` that `writer` still lacks, on every rank; rank 0 writes the
    manifest last.

    The module's `predict_step` writes through `module.writer`; each rank records what it wrote so that the
    manifest can show every image was written exactly once. Returns the split's image count.
    """
    kind = ctx.module.artifact.kind
    ids = ctx.dm.split(split).ids
    if ctx.trainer.is_global_zero:
        writer.clean_temporaries()
        writer.begin(producer_identity(ctx.plain, ctx.weights))  # files of other weights or settings go
    ctx.trainer.strategy.barrier()
    missing = writer.missing(ids)
    if missing:
        writer.invalidate()
        check_disk_for_predict(writer, ctx.dm.split(split), missing)  # fail early when it cannot fit
    log.info("predict %s/%s: %d of %d images to write", kind, split, len(missing), len(ids))
    if missing:
        ctx.module.writer = writer
        ctx.dm.predict_split, ctx.dm.predict_ids = split, missing
        writer.written = []
        ctx.trainer.predict(ctx.module, datamodule=ctx.dm, return_predictions=False)
        record_shard(writer, ctx.trainer.global_rank)
    ctx.trainer.strategy.barrier()
    if ctx.trainer.is_global_zero:
        left = writer.missing(ids) if partial_run(ctx.plain) else []
        if left:
            log.warning("%s: %d of %d images written (%s): no manifest, so no later step takes this "
                        "folder as finished", writer.root, len(ids) - len(left), len(ids),
                        partial_run(ctx.plain))
            ctx.partial.append(str(writer.root))
            return len(ids) - len(left)
        finish(writer, ids, **run_manifest(ctx, kind, split), **manifest_extra,
               written_by_rank=collect_shards(writer))
    return len(ids)


def run_manifest(ctx: "Context", kind: str, split: str) -> dict:
    """The manifest fields of a folder this run writes: which stage, data and weights it comes from."""
    return dict(stage=ctx.plain["stage"]["name"], kind=kind, dataset=ctx.plain["dataset"]["name"], split=split,
                config_hash=training_identity(ctx.plain),
                checkpoint=str(ctx.weights) if ctx.weights else "untrained")


def record_shard(writer: ArtifactDir, rank: int) -> None:
    """Each rank lists what it wrote, so the manifest can show every image was written exactly once."""
    atomic_write_json(writer.root / f".written.rank{rank}.json", sorted(getattr(writer, "written", [])))


def collect_shards(writer: ArtifactDir) -> dict[str, int]:
    counts, seen = {}, set()
    for p in sorted(writer.root.glob(".written.rank*.json")):
        ids = json.loads(p.read_text())
        twice = seen.intersection(ids)
        if twice:
            raise RuntimeError(f"{writer.root}: images written by more than one rank: {sorted(twice)[:3]}")
        seen.update(ids)
        counts[p.name.split(".rank")[1].split(".")[0]] = len(ids)
        p.unlink()
    return counts


def evaluated_splits(ctx: "Context"):
    """(split, dataset) of each `eval_splits` entry that has ground-truth masks; the others are named and skipped."""
    for split in ctx.eval_splits():
        ds = ctx.dm.split(split)
        if not ds.has_masks:
            log.warning("split %r has no ground-truth masks: not evaluated", split)
            continue
        yield split, ds


def evaluate(ctx: "Context") -> dict:
    from wsss.cams.evaluate import plot_curve, sweep

    if not ctx.trainer.is_global_zero:
        return {}
    ev = ctx.plain["stage"].get("evaluation", {})
    metrics, curves = {}, {}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = ctx.module.artifact.kind
    for split, ds in evaluated_splits(ctx):
        cams = own_artifacts(ctx, split)
        crf_options = [None] + ([ev["crf"]] if ev.get("crf") else [])
        for crf in crf_options:
            name = f"{split}" + ("+crf" if crf else "")
            r = sweep(ds, cams.root, ev.get("thresholds"), crf=crf, device=device, num_workers=ctx.plain["num_workers"])
            curves[name] = r
            metrics.update({f"{kind}/{name}/{k}": v for k, v in r.as_dict().items()})
    check_cams_learned(ctx, curves)
    if curves:
        plot_curve(curves, ctx.run_dir / f"{kind}_miou_curve.png")
        from wsss.logging_utils import log_evaluation

        log_evaluation(ctx.trainer.loggers, metrics, ctx.run_dir, kind, dataset=ctx.dm.split(split),
                       artifact_dir=cams.root)
    return metrics


def check_cams_learned(ctx: "Context", curves: dict) -> None:
    """CAMs at their best threshold no better than all background: the step learned nothing (wsss/learned.py)."""
    learned.forget(ctx.run_dir)
    val = ctx.plain["dataset"]["val_split"]
    name = "val" if "val" in curves else (val if val in curves else next(iter(curves), None))
    if name is not None:
        r = curves[name]
        what = f"{ctx.plain['stage']['name']} ({ctx.module.artifact.kind} on {name})"
        learned.check(ctx.run_dir, what, r.best_miou,
                      r.background_miou, learned.ADVICE["cams"],
                      ctx.plain["stage"].get("learned_nothing_margin", learned.DEFAULT_MARGIN))


class Context:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.plain = OmegaConf.to_container(cfg, resolve=True)
        self.run_dir = Path(self.plain["paths"]["run_dir"])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        stage_cls = get_class(self.plain["stage"]["_target_"])
        self.module: L.LightningModule = stage_cls(self.plain)
        self.trainer = build_trainer(self.plain, self.module, self.run_dir)
        self.module.world_size = self.trainer.world_size  # stage.batch_scope=global splits the batch over it
        self.dm = self.module.datamodule()
        self.trained = False
        self.partial: list[str] = []  # artifact folders a debugging run wrote in part (partial_run)
        self.weights: Path | None = None   # the checkpoint predictions come from (None: untrained)

    def tasks(self) -> list[str]:
        """The names of the tasks this run runs, each one its stage declares (wsss/stage_contract.py)."""
        return checked_task_names(type(self.module), self.plain)

    def data_read(self) -> list[str]:
        """What data this run's tasks read (the splits the scan checks)."""
        return data_read(type(self.module), self.tasks())

    def predict_splits(self) -> list[str]:
        return list(self.plain["stage"].get("predict_splits") or self.plain["dataset"]["predict_splits"])

    def eval_splits(self) -> list[str]:
        return list(self.plain["stage"].get("eval_splits") or self.plain["dataset"]["eval_splits"])


def partial_run(plain: dict) -> str | None:
    """The trainer setting that makes predict cover part of a split (Lightning's debugging switches), or
    None."""
    trainer = plain.get("trainer") or {}
    if trainer.get("fast_dev_run"):
        return f"trainer.fast_dev_run={trainer['fast_dev_run']}"
    limit = trainer.get("limit_predict_batches")
    if limit is not None and limit != 1.0:
        return f"trainer.limit_predict_batches={limit}"
    return None


def run(cfg: DictConfig) -> dict:
    with hold_run_folder(cfg.paths.run_dir):  # one writer per run folder (wsss/reliability/run_lock.py)
        if is_launch_rank_zero():
            new_invocation()  # the name of this run's rows in logs/metrics.csv and metrics.json
        return run_tasks(cfg)


def run_tasks(cfg: DictConfig) -> dict:
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)
    ctx = Context(cfg)
    scan_for_run(ctx)  # bad data fails here, before any task (wsss/data/scan.py)
    if ctx.trainer.is_global_zero:
        record_run(cfg, ctx.plain, ctx.run_dir)
    metrics: dict = {}
    with stop_on_signal(ctx.trainer.is_global_zero):  # outside Lightning's loops: stop (+ requeue) at once
        for name in ctx.tasks():
            if ctx.partial and not name.startswith("predict"):
                log.warning("%s skipped: it would read the partial folders %s", name, ", ".join(ctx.partial))
                continue
            metrics.update(type(ctx.module).tasks[name].run(ctx) or {})
    if ctx.partial:  # a finished run's metrics.json would let a pipeline take this run as up to date
        log.warning("partial run (%s): metrics.json not written; run without it for a complete run",
                    partial_run(ctx.plain))
    elif ctx.trainer.is_global_zero:  # earlier invocations' keys kept (wsss/reliability/history.py)
        metrics = merge_metrics(ctx.run_dir / "metrics.json", metrics)
        if learned.verdict(ctx.run_dir):  # again at the end, where the user looks
            log.warning(learned.verdict(ctx.run_dir))
    return metrics


FIT_TASK = Task(fit, reads=(FIT,))
PREDICT_TASK = Task(predict, reads=(PREDICT,), writes=(OWN,))
EVALUATE_CAMS = Task(evaluate, reads=(EVALUATE,))
