"""One device check: throughput and correctness of every GPU path, written as one JSON + Markdown report.

    python bench/gpu_check.py --out $OUT          # on a one-GPU machine (bench/gpu_check.sh installs first)
    python bench/gpu_check.py --cpu --out /tmp/x  # tiny CPU mode (ResNet-18, 64 px, 32-true, gloo): the test suite

Sections, each in its own process with its own time limit, so that one failing or hanging section records its
error and the others still run; the report (gpu_check.json, gpu_check.md) is rewritten after every section:
  env          torch, CUDA, device, package versions
  pnoc_speed   P-NOC ResNeSt-269 512 px step: fp32 eager reference vs our stage (bf16-mixed) vs a plain bf16
               classifier step (bench/bench_pnoc.py); goals ours >= 2.3x fp32 and >= 80 % of 1/3 plain bf16
  stages_<p>   pipeline=wsss then pipeline=cam_generators on 512 px synthetic images at precision <p>
               (bf16-mixed, 16-mixed: P-NOC's GradScaler path): every stage fits a few steps and predicts;
               a non-finite loss stops a run, so success means finite losses; seconds and img/s per step
  ddp          2 ranks sharing the one device (two "nodes" of one rank each, gloo): classifier, then P-NOC
               (find_unused_parameters), each fit + sharded predict + evaluate
  cam_predict  CAM predict img/s, 4 scales + flip
  random_walk  sparse random walk ms/img at 512 px
  scorecam     Score-CAM img/s, all labels of the image
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

# (name, seconds allowed on the GPU, on the CPU), quick ones first; the GPU total stays under 8 minutes
SECTIONS = [("env", 30, 60), ("pnoc_speed", 110, 90), ("cam_predict", 25, 60), ("random_walk", 20, 60),
            ("scorecam", 25, 60), ("ddp", 90, 200), ("stages_bf16-mixed", 150, 0), ("stages_16-mixed", 130, 0),
            ("stages_32-true", 0, 120)]
TOTAL_BUDGET = {"gpu": 480, "cpu": 600}


class Mode:
    def __init__(self, cpu: bool, work: Path):
        self.cpu, self.work = cpu, work
        self.device = "cpu" if cpu else "cuda"
        self.backbone = "resnet18" if cpu else "resnest269"        # the P-NOC speed section
        self.stage_backbone = "resnet18" if cpu else "resnet50"    # every stage, twice
        self.size = 64 if cpu else 512
        self.batch = 2 if cpu else 16
        self.images = {"train": 8, "val": 4}  # synthetic images of the stage runs

    def partial(self, name: str, data: dict) -> None:
        """What a section has so far, for the report if it is stopped at its time limit."""
        (self.work / f"{name}.partial.json").write_text(json.dumps(data, default=str))

    def common(self, runs: Path) -> list[str]:
        """run.py overrides of the stage runs: synthetic images at `size`, one short epoch."""
        n_train, n_val = self.images["train"], self.images["val"]
        lo, hi = int(self.size * 0.9), int(self.size * 1.1)
        out = ["experiment=synthetic", f"backbone={self.stage_backbone}", "backbone.pretrained=false",
               f"dataset.args.image_size={self.size}", f"dataset.args.splits={{train:{n_train},val:{n_val}}}",
               f"dataset.crop_size={self.size}", f"dataset.min_size={lo}", f"dataset.max_size={hi}",
               "stage.max_epochs=1", "stage.batch_size=4", "logger=csv",
               "trainer.enable_progress_bar=false", f"num_workers={0 if self.cpu else 4}",
               f"paths.runs_dir={runs}", f"paths.data_dir={self.work / 'data'}"]
        return out + (["stage.inference.scales=[1.0]", "trainer.accelerator=cpu"] if self.cpu else ["trainer=gpu"])


def sync(mode: Mode) -> None:
    import torch

    if not mode.cpu:
        torch.cuda.synchronize()


# -- sections (each runs in a child process and returns a JSON-able dict) ------------------------------------
def section_env(mode: Mode) -> dict:
    import pytorch_lightning
    import timm
    import torch

    out = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
           "timm": timm.__version__, "lightning": pytorch_lightning.__version__, "device": "cpu",
           "cuda_available": torch.cuda.is_available()}
    if not mode.cpu:
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device visible (run with --cpu for the CPU mode)")
        p = torch.cuda.get_device_properties(0)
        out.update(device=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
    return out


def section_pnoc_speed(mode: Mode) -> dict:
    import torch

    import bench_pnoc as b

    torch.backends.cudnn.benchmark = not mode.cpu
    for batch in (mode.batch, mode.batch // 2):  # the fp32 reference holds three passes' activations
        args = argparse.Namespace(device=mode.device, backbone=mode.backbone, size=mode.size, batch=batch,
                                  steps=1 if mode.cpu else 5, warmup=0 if mode.cpu else 2)
        try:
            rows = {}
            with b.strict_fp32():
                rows["reference_fp32"] = b.reference_pnoc(args)
            torch.set_float32_matmul_precision("high")
            rows["ours_bf16_mixed"] = b.our_stage(args)
            rows["plain_bf16_step"] = b.classifier_floor(args)
            break
        except torch.cuda.OutOfMemoryError:
            if batch != mode.batch:
                raise
            mode.partial("pnoc_speed", {"out_of_memory_at_batch": batch})
            torch.cuda.empty_cache()
    out = {k: {"s_per_step": sec, "img_per_s": args.batch / sec, "peak_gib": mem} for k, (sec, mem) in rows.items()}
    ref, ours, plain = (out[k]["img_per_s"] for k in ("reference_fp32", "ours_bf16_mixed", "plain_bf16_step"))
    out["ours_over_fp32"] = ours / ref
    out["ours_over_third_of_plain_bf16"] = ours / (plain / 3)
    out["goals_met"] = {"ours >= 2.3x fp32": ours / ref >= 2.3, "ours >= 0.8 x plain/3": ours / (plain / 3) >= 0.8}
    out["setting"] = f"{args.backbone} {args.size}px batch {args.batch}, {args.steps} timed steps"
    return out


def run_py(args: list[str], log: Path, env: dict | None = None, timeout: float | None = None) -> float:
    """Runs `python run.py <args>`, output to `log`; seconds; raises naming the log's tail on failure."""
    start = time.monotonic()
    with open(log, "a") as f:
        rc = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, stdout=f,
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, timeout=timeout).returncode
    if rc:
        tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
        raise RuntimeError(f"python run.py {' '.join(args)} exited {rc}; end of {log}:\n{tail}")
    return time.monotonic() - start


def pipeline_rows(runs: Path, name: str, backbone: str, images: dict) -> dict:
    folder = runs / "pipeline" / name / "synthetic" / backbone / "default"
    if not (folder / "pipeline.json").is_file():
        return {}
    steps = json.loads((folder / "pipeline.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    rows = {}
    for s in steps:
        seen = 2 * images["train"] + images["val"]  # one epoch of train, then predict train + val
        rows[s["id"]] = {"status": s["status"], "seconds": s["seconds"],
                         "img_per_s_incl_startup": seen / s["seconds"] if s["seconds"] else None,
                         "metrics": {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(s["id"] + "/")}}
    return rows


def section_stages(mode: Mode, precision: str) -> dict:
    log = mode.work / f"stages_{precision}.log"
    common = [*mode.common(mode.work / f"runs_{precision}"), f"trainer.precision={precision}"]
    if mode.cpu:  # the CPU mode keeps to the first step (the test's time; ddp runs P-NOC); the GPU runs all
        only = [f"+pipeline.steps.{s}.enabled=false" for s in ("pnoc", "ccam", "saliency", "affinity", "deeplab")]
        run_py(["pipeline=wsss", *common, *only], log)
        return stage_rows(mode, precision)
    try:
        for name in ("wsss", "cam_generators"):  # the second shares classifier and pnoc with the first
            run_py([f"pipeline={name}", *common], log)
    finally:  # a failed step still has its neighbours' rows
        mode.partial(f"stages_{precision}", stage_rows(mode, precision))
    return stage_rows(mode, precision)


def stage_rows(mode: Mode, precision: str) -> dict:
    """Every step the pipelines of `precision` ran so far (also read by the parent after a timeout)."""
    runs = mode.work / f"runs_{precision}"
    out = {"precision": precision, "backbone": mode.stage_backbone, "image_size": mode.size, "images": mode.images}
    for name in ("wsss", "cam_generators"):
        out[name] = pipeline_rows(runs, name, mode.stage_backbone, mode.images)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_ranks(args: list[str], log: Path, timeout: float) -> float:
    """`run.py <args>` as 2 DDP ranks on this one machine and device: two 'nodes' of one rank each (Lightning
    then puts both on device 0, which NCCL refuses: gloo)."""
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    cmd = [sys.executable, str(ROOT / "run.py"), *args, "trainer.strategy=ddp", "trainer.devices=1",
           "trainer.num_nodes=2", "+trainer.process_group_backend=gloo"]
    start = time.monotonic()
    procs = []
    for rank in (0, 1):
        f = open(log.with_suffix(f".rank{rank}.log"), "a")
        procs.append((subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                       env={**os.environ, **env, "NODE_RANK": str(rank), "RANK": str(rank)}), f))
    codes = []
    for p, f in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, timeout - (time.monotonic() - start))))
        except subprocess.TimeoutExpired:
            for q, _ in procs:
                q.kill()
            raise
        finally:
            f.close()
    if any(codes):
        tails = {r: "".join(log.with_suffix(f".rank{r}.log").read_text().splitlines(keepends=True)[-20:])
                 for r in (0, 1)}
        raise RuntimeError(f"DDP ranks exited {codes}: {' '.join(args)}\nrank 0:\n{tails[0]}\nrank 1:\n{tails[1]}")
    return time.monotonic() - start


def section_ddp(mode: Mode) -> dict:
    runs = mode.work / "runs_ddp"
    common = [*mode.common(runs), "dataset.predict_splits=[val]", "dataset.eval_splits=[val]"]
    budget = 150 if mode.cpu else 45
    out = {"classifier_s": two_ranks([*common, "run_name=ddp"], mode.work / "ddp_classifier", budget)}
    mode.partial("ddp", out)
    ckpt = runs / "classifier" / "synthetic" / mode.stage_backbone / "ddp" / "checkpoints" / "last.ckpt"
    out["pnoc_s"] = two_ranks([*common, "stage=pnoc", "run_name=ddp", f"stage.oc_checkpoint={ckpt}"],
                              mode.work / "ddp_pnoc", budget)
    for stage in ("classifier", "pnoc"):
        run_dir = runs / stage / "synthetic" / mode.stage_backbone / "ddp"
        manifest = json.loads((run_dir / "cams" / "val" / "manifest.json").read_text())
        out[f"{stage}_val_written_by_rank"] = manifest["written_by_rank"]  # predict sharded over both ranks
        out[f"{stage}_metrics"] = json.loads((run_dir / "metrics.json").read_text())
    return out


def section_cam_predict(mode: Mode) -> dict:
    import torch

    from wsss.cams.inference import multiscale_cams
    from wsss.models.backbone import Backbone
    from wsss.models.cam_head import CAMNet

    net = CAMNet(Backbone(mode.backbone, pretrained=False, output_stride=16), 20).to(mode.device).eval()
    n = 2 if mode.cpu else 16
    images = torch.randn(n, 3, mode.size, mode.size, device=mode.device)
    dtype = torch.bfloat16 if not mode.cpu else torch.float32

    def predict():
        with torch.no_grad(), torch.autocast(mode.device, dtype=dtype, enabled=not mode.cpu):
            for i in range(0, n, 4):
                multiscale_cams(lambda x: net(x)[1], images[i:i + 4])
        sync(mode)

    if not mode.cpu:
        predict()  # warm-up: cuDNN plans for the four scales
    start = time.perf_counter()
    predict()
    sec = time.perf_counter() - start
    return {"backbone": mode.backbone, "size": mode.size, "scales": [0.5, 1.0, 1.5, 2.0], "flip": True,
            "precision": "bf16 autocast" if not mode.cpu else "fp32", "img_per_s": n / sec}


def section_random_walk(mode: Mode) -> dict:
    import bench_random_walk as rw

    size = 64 if mode.cpu else 512
    best, peak, _ = rw.run_one("sparse", size, 21, mode.device, 3)
    return {"size": size, "classes": 21, "ms_per_img": best * 1000, "peak_mib": peak / 2**20}


def section_scorecam(mode: Mode) -> dict:
    import timm
    import torch

    from bench_xai import ForwardFeatures
    from wsss.xai.methods import ScoreCAM
    from wsss.xai.split import SplitModel

    arch, size = ("resnet18", 64) if mode.cpu else ("resnet50", 448)
    torch.manual_seed(0)
    net = timm.create_model(arch, pretrained=False, num_classes=20).eval().to(mode.device)
    model = SplitModel.from_gap_classifier(ForwardFeatures(net), net.fc.weight, net.fc.bias)
    n = 1 if mode.cpu else 4
    images = torch.randn(n, 3, size, size, device=mode.device)
    method = ScoreCAM(batch_size=128, skip_constant=False, resolution="input")
    if not mode.cpu:
        method(model, images[:1], None)  # warm-up: cuDNN plans
    sync(mode)
    start = time.perf_counter()
    maps = method(model, images, None)
    sync(mode)
    sec = time.perf_counter() - start
    if not torch.isfinite(torch.as_tensor(maps)).all():
        raise RuntimeError("Score-CAM maps are not finite")
    return {"arch": arch, "size": size, "labels": 20, "img_per_s": n / sec}


def run_section(name: str, mode: Mode) -> dict:
    if name.startswith("stages_"):
        return section_stages(mode, name.split("_", 1)[1])
    return globals()[f"section_{name}"](mode)


# -- the orchestrator ----------------------------------------------------------------------------------------
def finite(value):
    """JSON without NaN/Infinity (not JSON): such values become null."""
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(finite(report), indent=2, default=str, allow_nan=False))
    tmp.replace(out / "gpu_check.json")
    (out / "gpu_check.md.tmp").write_text(markdown(report))
    (out / "gpu_check.md.tmp").replace(out / "gpu_check.md")


def markdown(report: dict) -> str:
    lines = [f"# wsss device check ({report['mode']})", "", f"{report['started']}, {report['seconds']:.0f} s in all", "",
             "| section | status | seconds |", "|---|---|---|"]
    for name, s in report["sections"].items():
        lines.append(f"| {name} | {s['status']} | {s['seconds']:.1f} |")
    lines += headline(report["sections"])
    for name, s in report["sections"].items():
        lines += ["", f"## {name}", ""]
        if s.get("error"):
            lines += ["```", s["error"][-3000:], "```"]
        lines += ["```json", json.dumps(s.get("result"), indent=1, default=str)[:6000], "```"]
    return "\n".join(lines) + "\n"


def headline(sections: dict) -> list[str]:
    """The numbers the README quotes, as tables."""
    lines = []
    speed = (sections.get("pnoc_speed") or {}).get("result") or {}
    if "ours_over_fp32" in speed:
        lines += ["", f"P-NOC step, {speed['setting']}:", "", "| run | s/step | img/s | peak GiB |", "|---|---|---|---|"]
        for k in ("reference_fp32", "ours_bf16_mixed", "plain_bf16_step"):
            r = speed[k]
            lines.append(f"| {k} | {r['s_per_step']:.3f} | {r['img_per_s']:.2f} | {r['peak_gib']} |")
        lines += ["", f"ours / fp32 = {speed['ours_over_fp32']:.2f} (goal >= 2.3); ours / (plain bf16 / 3) = "
                  f"{speed['ours_over_third_of_plain_bf16']:.2f} (goal >= 0.8)"]
    rows = []
    for name, s in sections.items():
        res = s.get("result") or {}
        for pipe in ("wsss", "cam_generators"):
            for step, r in (res.get(pipe) or {}).items():
                rate = r.get("img_per_s_incl_startup")
                rows.append(f"| {res.get('precision')} | {pipe} | {step} | {r['status']} | {r['seconds']} | "
                            f"{'' if rate is None else f'{rate:.2f}'} |")
    if rows:
        lines += ["", "Stages (img/s = (2 x train + val images) / seconds of the step, process start-up included):",
                  "", "| precision | pipeline | step | status | seconds | img/s |", "|---|---|---|---|---|---|", *rows]
    for name in ("cam_predict", "random_walk", "scorecam"):
        res = (sections.get(name) or {}).get("result") or {}
        if res:
            lines.append(f"\n{name}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                                     for k, v in res.items()))
    return lines


def orchestrate(args) -> dict:
    out = Path(args.out)
    work = Path(args.work or out / "work")
    work.mkdir(parents=True, exist_ok=True)
    kind = "cpu" if args.cpu else "gpu"
    report = {"mode": kind, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "seconds": 0.0, "sections": {}}
    t0 = time.monotonic()
    for name, gpu_s, cpu_s in SECTIONS:
        limit = cpu_s if args.cpu else gpu_s
        if not limit or (args.only and name not in args.only):
            continue
        left = TOTAL_BUDGET[kind] - (time.monotonic() - t0)
        entry = {"status": "skipped", "seconds": 0.0, "limit_s": limit}
        if left < min(limit, 20):
            entry["error"] = f"not started: {left:.0f} s of the {TOTAL_BUDGET[kind]} s budget left"
        else:
            entry.update(run_child(name, args, work, min(limit, left)))
        report["sections"][name] = entry
        report["seconds"] = time.monotonic() - t0
        write_report(report, out)
        print(f"gpu_check: {name}: {entry['status']} ({entry['seconds']:.1f} s)", flush=True)
    return report


def run_child(name: str, args, work: Path, limit: float) -> dict:
    result = work / f"{name}.json"
    result.unlink(missing_ok=True)
    (work / f"{name}.partial.json").unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--section", name, "--result", str(result), "--work", str(work),
           *(["--cpu"] if args.cpu else [])]
    start = time.monotonic()
    log = work / f"{name}.log"
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = p.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)  # the section's own children (run.py, DDP ranks) too
            p.wait()
            rc = None
    entry = {"seconds": time.monotonic() - start}
    data = json.loads(result.read_text()) if result.is_file() else {}
    partial = work / f"{name}.partial.json"
    if not data and partial.is_file():
        data = {"result": {"partial": True, **json.loads(partial.read_text())}}
    if not data and name.startswith("stages_"):  # killed mid-pipeline: the steps that finished
        with contextlib.suppress(Exception):
            data = {"result": {"partial": True, **stage_rows(Mode(args.cpu, work), name.split("_", 1)[1])}}
    if rc is None:
        entry.update(status="timeout", error=f"stopped after {limit:.0f} s; end of {log}:\n" + tail(log))
    elif rc or "error" in data:
        entry.update(status="error", error=data.get("error") or f"exit {rc}; end of {log}:\n" + tail(log))
    else:
        entry["status"] = "ok"
    entry["result"] = data.get("result")
    return entry


def tail(path: Path, n: int = 30) -> str:
    return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-n:]) if path.is_file() else ""


def child(args) -> int:
    mode = Mode(args.cpu, Path(args.work))
    try:
        data = {"result": run_section(args.section, mode)}
    except BaseException:
        data = {"error": traceback.format_exc()[-4000:]}
    Path(args.result).write_text(json.dumps(data, default=str))
    return 1 if "error" in data else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="tiny CPU mode (ResNet-18, 64 px, 32-true, gloo)")
    p.add_argument("--out", default=os.environ.get("OUT", "gpu_check_out"), help="report folder (default $OUT)")
    p.add_argument("--work", help="scratch folder (default <out>/work)")
    p.add_argument("--only", nargs="*", help="run only these sections")
    p.add_argument("--section", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.section:
        return child(args)
    report = orchestrate(args)
    bad = [n for n, s in report["sections"].items() if s["status"] != "ok"]
    print(f"gpu_check: report in {args.out}/gpu_check.md; " + (f"not ok: {', '.join(bad)}" if bad else "all ok"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
