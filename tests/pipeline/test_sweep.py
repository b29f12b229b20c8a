"""Sweeps: the summary of every job's metrics, run folders named from the overrides, and the DDP guard."""
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, TINY
from wsss.app import local_ddp_sweep_error
from wsss.sweep import SweepSummary, make_record, objective_value, run_label
from wsss.sweep_record import SweepRecord
from wsss.sweep_summary import write_summary

BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def fake_job(sweep: Path, name: str, overrides: list[str], metrics: dict | None, error: str | None = None) -> Path:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / "cams" / ".hydra").mkdir(parents=True)  # artifact subfolders are not searched for jobs
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if error is not None:
        (job / "error.txt").write_text(error + "\n\nTraceback ...\n")
    return job


def grid_2x2(sweep: Path) -> None:
    """stage.lr x seed; experiment fixed; one job failed (after an earlier attempt had left metrics.json)."""
    m = {"cams/val/iou": {"a": 1.0}, "cams/val/count": 8, "val/loss": 0.7}
    fake_job(sweep, "j1", ["experiment=synthetic", "stage.lr=0.05", "seed=0"],
             {**m, "cams/val/miou": 0.30, "cams/train/miou": 0.2, "val/map": 0.5, "val/loss": 0.9})
    fake_job(sweep, "j2", ["experiment=synthetic", "stage.lr=0.1", "seed=0"],
             {**m, "cams/val/miou": 0.25, "cams/train/miou": 0.3, "val/map": 0.6, "val/loss": 0.4})
    fake_job(sweep, "j3", ["experiment=synthetic", "stage.lr=0.05", "seed=1"],
             {**m, "cams/val/miou": 0.40, "cams/train/miou": 0.1, "val/map": 0.4})
    fake_job(sweep, "j4", ["experiment=synthetic", "stage.lr=0.1", "seed=1"], {"cams/val/miou": 0.99},
             error="RuntimeError: loss is nan at step 3")


def test_summary_columns_are_the_swept_keys_then_metrics_in_percent_best_first(tmp_path):
    grid_2x2(tmp_path)
    rows = write_summary(tmp_path)
    table = list(csv.reader((tmp_path / "sweep_summary.csv").open()))
    assert table[0] == ["stage.lr", "seed", "cams/val/miou", "cams/train/miou", "val/map", "cams/val/count",
                        "val/loss", "best", "status", "error", "job"]
    # best first by the first mIoU (no objective); the failed job last, its stale metrics.json ignored
    assert [r[:3] for r in table[1:]] == [["0.05", "1", "40.0000"], ["0.05", "0", "30.0000"],
                                          ["0.1", "0", "25.0000"], ["0.1", "1", ""]]
    assert [r[5] for r in table[1:4]] == ["8", "8", "8"]  # counts stay integers
    assert [r[7] for r in table[1:]] == ["★", "", "", ""]
    assert table[4][8:] == ["failed", "RuntimeError: loss is nan at step 3", "j4"]
    assert [r.folder for r in rows] == ["j3", "j1", "j2", "j4"]
    md = (tmp_path / "sweep_summary.md").read_text()
    assert "| stage.lr | seed | cams/val/miou | cams/train/miou | val/map | cams/val/count | val/loss | best |" in md
    assert "| 0.05 | 1 | 40.00 | 10.00 | 40.00 | 8 | 0.7 | ★ |" in md
    assert "## Failed\n\n- stage.lr=0.1 seed=1: RuntimeError: loss is nan at step 3 (`j4/error.txt`)" in md
    assert "experiment" not in md.split("\n|")[0]  # a key with one value is not a column


def test_summary_sorts_by_the_objective_in_its_direction(tmp_path):
    grid_2x2(tmp_path)
    fake_job(tmp_path, "j5", ["experiment=synthetic", "stage.lr=0.2", "seed=0"], None)  # still running
    record = SweepRecord(id="x", group="g#x", swept=["stage.lr", "seed"], objective="val/loss",
                         direction="minimize", started=0.0)
    write_summary(tmp_path, record)
    table = list(csv.DictReader((tmp_path / "sweep_summary.csv").open()))
    assert list(table[0])[:3] == ["stage.lr", "seed", "val/loss"]
    assert [r["job"] for r in table] == ["j2", "j3", "j1", "j4", "j5"]
    assert [r["status"] for r in table][3:] == ["failed", "not finished"]
    md = (tmp_path / "sweep_summary.md").read_text()
    assert "Sorted by `val/loss`, lowest first" in md and "## Not finished" in md


def test_summary_without_objective_or_miou_ranks_nothing(tmp_path):
    fake_job(tmp_path, "a", ["seed=0"], {"val/map": 0.2})
    fake_job(tmp_path, "b", ["seed=1"], {"val/map": 0.7})
    write_summary(tmp_path)
    table = list(csv.DictReader((tmp_path / "sweep_summary.csv").open()))
    assert [(r["seed"], r["val/map"], r["best"]) for r in table] == [("0", "20.0000", ""), ("1", "70.0000", "")]
    assert "Not ranked: no objective= set" in (tmp_path / "sweep_summary.md").read_text()


def test_summary_never_ranks_by_a_monitoring_metric(tmp_path):
    """A fit-only sweep logs monitor/train_cam_miou (train masks): it is shown but does not pick a best run."""
    fake_job(tmp_path, "a", ["seed=0"], {"monitor/train_cam_miou": 0.2})
    fake_job(tmp_path, "b", ["seed=1"], {"monitor/train_cam_miou": 0.7})
    write_summary(tmp_path)
    table = list(csv.DictReader((tmp_path / "sweep_summary.csv").open()))
    assert [r["best"] for r in table] == ["", ""]


def test_record_names_the_swept_keys_and_one_group_per_command(tmp_path):
    from omegaconf import OmegaConf

    def config(command, params=None):
        return OmegaConf.create({
            "objective": None, "paths": {"runs_dir": str(tmp_path)},
            "hydra": {"overrides": {"task": command}, "sweep": {"dir": str(tmp_path / "multirun/classifier/x")},
                      "sweeper": {"_target_": "s", "params": params}}})

    command = ["experiment=synthetic", "stage.lr=0.05,0.1", "seed=range(2)", "+stage.kur.alpha=choice(1,2)"]
    record = make_record(config(command, {"stage.weight_decay": "1e-4,1e-5"}))
    assert record.swept == ["stage.lr", "seed", "stage.kur.alpha", "stage.weight_decay"]
    assert record.group == f"classifier/x#{record.id}"
    assert make_record(config(command, {"stage.weight_decay": "1e-4,1e-5"})).id == record.id  # resumed sweep
    assert make_record(config(["stage.lr=0.2,0.4"])).id != record.id


def test_run_label_is_the_stage_and_the_swept_values():
    overrides = ["experiment=synthetic", "stage.lr=0.1", "seed=1", "stage.oc.lr=0.0646642271741456"]
    assert run_label("classifier", ["stage.lr", "seed"], overrides) == "classifier lr=0.1 seed=1"
    assert run_label("pnoc", ["stage.lr", "stage.oc.lr"], overrides) == "pnoc stage.lr=0.1 oc.lr=0.06466"
    assert run_label("poc", ["stage", "seed"], ["stage=poc", "seed=1"]) == "poc seed=1"


def test_callback_records_a_failed_job_and_summarises_only_this_multirun(tmp_path):
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    old = fake_job(tmp_path, "seed=9", ["seed=9"], {"m": 1.0})
    past = time.time() - 3600
    os.utime(old / ".hydra" / "overrides.yaml", (past, past))
    callback = SweepSummary()
    master = {"hydra": {"overrides": {"task": ["seed=0,1"]}, "sweep": {"dir": str(tmp_path)}}}
    callback.on_multirun_start(OmegaConf.create(master))
    assert SweepRecord.load(tmp_path).swept == ["seed"]
    done, failed = (fake_job(tmp_path, f"seed={i}", [f"seed={i}"], {"m": 0.5}) for i in range(2))

    def job(folder):
        return OmegaConf.create({"hydra": {**master["hydra"], "runtime": {"output_dir": str(folder)}}})

    ret = JobReturn(status=JobStatus.FAILED, _return_value=ValueError("bad batch\nsecond line"))
    callback.on_job_end(job(failed), job_return=ret)
    assert (failed / "error.txt").read_text().startswith("ValueError: bad batch\n")
    callback.on_multirun_end(OmegaConf.create(master))
    table = list(csv.DictReader((tmp_path / "sweep_summary.csv").open()))
    assert [(r["job"], r["status"], r["error"]) for r in table] == [("seed=0", "done", ""),
                                                                    ("seed=1", "failed", "ValueError: bad batch")]
    callback.on_job_start(job(failed))  # the job runs again: its old error is gone
    assert not (failed / "error.txt").exists() and done.is_dir()


def test_objective_names_the_metrics_there_are_when_missing():
    assert objective_value("val/map", {"val/map": 0.5, "cams/val/count": 3}) == 0.5
    assert objective_value(None, {}) is None
    with pytest.raises(KeyError, match=r"objective=cams/val/miou .* it has: cams/val/count, val/map"):
        objective_value("cams/val/miou", {"val/map": 0.5, "cams/val/count": 3, "cams/val/iou": {}})


@pytest.mark.parametrize("trainer, multirun, launcher, refused", [
    ({"strategy": "ddp", "devices": 2}, True, BASIC, True),
    ({"strategy": "ddp_find_unused_parameters_true", "devices": 4}, True, BASIC, True),
    ({"strategy": "ddp", "devices": 1, "num_nodes": 2}, True, BASIC, True),
    ({"strategy": "ddp", "devices": 2}, True, SLURM, False),     # SLURM creates the ranks
    ({"strategy": "ddp", "devices": 2}, False, BASIC, False),    # a single run relaunches itself fine
    ({"strategy": "ddp_spawn", "devices": 2}, True, BASIC, False),  # no re-execution
    ({"strategy": "ddp", "devices": 1}, True, BASIC, False),
])
def test_local_multirun_with_ddp_is_refused(trainer, multirun, launcher, refused):
    error = local_ddp_sweep_error(trainer, multirun, launcher)
    assert (error is not None) == refused
    if refused:
        assert "hydra/launcher=slurm" in error and "BasicLauncher" in error


def run_py(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, HYDRA_FULL_ERROR="1"))


def test_local_ddp_multirun_fails_before_training(tmp_path):
    out = run_py("-m", "trainer=ddp_cpu", "seed=0,1", f"paths.runs_dir={tmp_path}", f"paths.data_dir={tmp_path}")
    assert out.returncode != 0
    assert "hydra/launcher=slurm" in out.stderr and "trainer.strategy=ddp" in out.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


def the_sweep(runs: Path) -> Path:
    """The one sweep folder under `runs` (<run_name>-<sweep id>)."""
    [sweep] = (runs / "multirun" / "classifier" / "synthetic" / "resnet18").glob("default-*")
    return sweep


@pytest.mark.slow
def test_multirun_names_run_dirs_from_overrides_resumes_and_summarises(tmp_path, data_dir):
    args = ["-m", *TINY, "tasks=[fit]", "stage.lr=0.05,0.1", f"paths.runs_dir={tmp_path}",
            f"paths.data_dir={data_dir}"]
    first = run_py(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = the_sweep(tmp_path)
    def overrides(d):
        f = d / ".hydra" / "overrides.yaml"
        return f.read_text() if f.is_file() else ""

    jobs = {lr: [d for d in sweep.iterdir() if f"stage.lr={lr}\n" in overrides(d)] for lr in ("0.05", "0.1")}
    assert all(len(found) == 1 for found in jobs.values()), jobs  # one folder per member, named from the overrides
    jobs = {lr: found[0] for lr, found in jobs.items()}
    for job in jobs.values():
        assert (job / "checkpoints" / "last.ckpt").is_file()
    rows = list(csv.DictReader((sweep / "sweep_summary.csv").open()))
    assert sorted(r["job"] for r in rows) == sorted(j.name for j in jobs.values())
    assert all(r["status"] == "done" and 0 <= float(r["val/map"]) <= 100 for r in rows)
    again = run_py(*args)  # the same sweep again resumes every job from its last.ckpt
    assert again.returncode == 0, again.stderr[-3000:]
    out = again.stdout + again.stderr
    for job in jobs.values():
        assert f"resuming from {job / 'checkpoints' / 'last.ckpt'}" in out


def offline_runs(sweep: Path) -> list[dict]:
    from wsss.logging_utils import offline_history

    return [offline_history(folder) for folder in sorted(sweep.rglob("wandb/offline-run-*"))]


@pytest.mark.slow
def test_grid_sweep_names_wandb_runs_by_swept_values_in_one_group_and_ranks_them(tmp_path, data_dir):
    tiny = [o for o in TINY if not o.startswith("logger=")]
    out = run_py("-m", *tiny, "logger=wandb", "logger.wandb.mode=offline", "stage.lr=0.05,0.1", "seed=0,1",
                 f"paths.runs_dir={tmp_path}", f"paths.data_dir={data_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = the_sweep(tmp_path)
    record = json.loads((sweep / "sweep.json").read_text())
    runs = offline_runs(sweep)
    assert sorted(r["name"] for r in runs) == [f"classifier lr={lr} seed={s}" for lr in ("0.05", "0.1") for s in (0, 1)]
    assert {r["group"] for r in runs} == {record["group"]} and record["group"].startswith(
        "classifier/synthetic/resnet18/default-") and record["group"].endswith(record["id"])
    for r in runs:
        assert r["job_type"] == "classifier" and {"classifier", "synthetic", "resnet18"} <= set(r["tags"])
        assert "cfg" not in r["config"] and r["config"]["stage.name"] == "classifier"
        assert r["name"] == f"classifier lr={r['config']['stage.lr']} seed={r['config']['seed']}"
    header, *rows = list(csv.reader((sweep / "sweep_summary.csv").open()))
    assert header[:3] == ["stage.lr", "seed", "cams/val/miou"]
    # each row's mIoU, read from its own job folder's metrics.json, in percent, best first
    miou = [json.loads((sweep / r[-1] / "metrics.json").read_text())["cams/val/miou"] for r in rows]
    assert [float(r[2]) for r in rows] == pytest.approx([100 * m for m in miou], abs=1e-4)
    assert miou == sorted(miou, reverse=True) and len(rows) == 4
    assert [r[header.index("best")] for r in rows] == ["★", "", "", ""]
    assert {r[header.index("cams/val/count")] for r in rows} == {"8"}
    md = (sweep / "sweep_summary.md").read_text()
    assert "| stage.lr | seed | cams/val/miou |" in md and f"W&B group `{record['group']}`" in md


@pytest.mark.slow
def test_optuna_search_of_three_trials_ends_with_the_same_summary(tmp_path, data_dir):
    out = run_py("hparams_search=classifier_optuna", "hydra.sweeper.n_trials=3", *TINY,
                 f"paths.runs_dir={tmp_path}", f"paths.data_dir={data_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = the_sweep(tmp_path)
    table = list(csv.DictReader((sweep / "sweep_summary.csv").open()))
    assert len(table) == 3 and all(r["status"] == "done" for r in table)
    space = ["stage.lr", "stage.weight_decay", "stage.label_smoothing"]
    keys = list(table[0])[: list(table[0]).index("val/map")]
    assert {"stage.lr", "stage.weight_decay"} <= set(keys) <= set(space)  # continuous: always differ
    assert all(0.01 <= float(r["stage.lr"]) <= 0.3 and float(r["stage.label_smoothing"]) in (0.0, 0.1, 0.2)
               for r in table if "stage.label_smoothing" in r)
    maps = [float(r["val/map"]) for r in table]
    assert maps == sorted(maps, reverse=True) and table[0]["best"] == "★"
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert 100 * best["best_value"] == pytest.approx(maps[0], abs=1e-3)
    assert best["best_params"]["stage.lr"] == pytest.approx(float(table[0]["stage.lr"]))


def test_a_pipelines_steps_share_one_wandb_group(tmp_path):
    out = run_py("pipeline=cam_generators", "experiment=synthetic", "logger=wandb", "pipeline.dry_run=true",
                 f"paths.runs_dir={tmp_path}", f"paths.data_dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    groups = [w.split("=", 1)[1] for w in out.stdout.split() if w.startswith("logger.wandb.group=")]
    assert len(groups) == 5 and set(groups) == {"cam_generators-synthetic-resnet18-default"}


def test_optuna_search_space_composes_with_the_objective_it_maximises():
    out = run_py("hparams_search=classifier_optuna", "--cfg", "all", timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    cfg = yaml.safe_load(out.stdout)
    sweeper = cfg["hydra"]["sweeper"]
    assert sweeper["_target_"].endswith("OptunaSweeper") and sweeper["direction"] == "maximize"
    assert set(sweeper["params"]) == {"stage.lr", "stage.weight_decay", "stage.label_smoothing"}
    assert cfg["objective"] == "val/map" and cfg["hydra"]["mode"] == "MULTIRUN"
