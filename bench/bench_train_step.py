"""Each stage's training step under our Trainer against the bare step of the same module on the same batches.

ours:    `trainer.fit` of the stage as `run.py` builds it (tasks.build_trainer: the project's callbacks, csv
         logger, the stage's logging), over an in-memory loader of pre-made batches; the time of a step is the
         interval between two batch starts, so it holds everything the loop does per batch.
ceiling: the same stage's `training_step` called in a plain loop with its own optimisers and schedulers,
         `backward`, `step`, `zero_grad`; logging a no-op, the ramp counters passed in, nothing else.
Same network, batches, precision (the stage's 32-true on the CPU) and initial weights. Before timing, both
sides run the same steps from the same state and their weights must agree (printed: max |Δ|).

    python bench/bench_train_step.py                   # every stage, 64 px, batch 4
    python bench/bench_train_step.py --stages classifier pnoc --size 96 --repeats 7
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import tempfile
from pathlib import Path

import pytorch_lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import check_equal, compose, interleaved, machine, now, quiet_torch  # noqa: E402

STAGES = ("classifier", "puzzle", "occse", "poc", "pnoc", "ccam", "saliency", "affinity", "deeplab")
GOAL = 0.85


def stage_config(stage: str, size: int, batch: int, work: Path, accumulate: int = 1) -> dict:
    over = [
        f"++trainer.accumulate_grad_batches={accumulate}",
        f"stage={stage}",
        "experiment=synthetic",
        "debug=tiny",
        f"dataset.crop_size={size}",
        f"stage.batch_size={batch}",
        "logger=csv",
        "trainer.limit_val_batches=0",
        "ckpt_path=null",
        "stage.max_epochs=1",  # one pass over the batches (experiment=synthetic gives DeepLab 30 epochs)
    ]
    if (
        stage == "ccam"
    ):  # the polarity decision after the last epoch reads the data module's images: not a step
        over.append("stage.polarity.rule=none")
    if stage in ("affinity", "deeplab"):  # from scratch here, not from the pnoc run's backbone
        over.append("stage.backbone_checkpoint=null")
    if stage in ("occse", "poc", "pnoc"):
        over.append(f"stage.oc_checkpoint={work / 'oc.ckpt'}")
    cfg = compose(over, work / stage)
    cfg["stage"].setdefault("hints", {})
    return cfg


def write_oc(work: Path, size: int, batch: int) -> None:
    """A classifier checkpoint for the stages that read an ordinary classifier (untrained weights)."""
    from wsss.stages.classifier import ClassifierStage

    cfg = stage_config("classifier", size, batch, work)
    torch.save(
        {"state_dict": ClassifierStage(cfg).state_dict(), "hyper_parameters": {"cfg": cfg}}, work / "oc.ckpt"
    )


def make_batches(cfg: dict, n: int, seed: int = 0) -> list[dict]:
    """`n` batches of the keys the stages read: images, multi-hot labels, a class mask (with ignored pixels),
    a saliency mask for `saliency`, C²AM hints."""
    g = torch.Generator().manual_seed(seed)
    b, size, c = (
        int(cfg["stage"]["batch_size"]),
        int(cfg["dataset"]["crop_size"]),
        int(cfg["dataset"]["num_classes"]),
    )
    stage = cfg["stage"]["name"]
    out = []
    for i in range(n):
        labels = (torch.rand(b, c, generator=g) < 0.2).float()
        labels[torch.arange(b), torch.randint(0, c, (b,), generator=g)] = 1.0
        mask = torch.randint(0, c + 1, (b, size, size), generator=g)
        mask[torch.rand(b, size, size, generator=g) < 0.1] = 255
        if stage == "saliency":
            mask = (torch.rand(b, size, size, generator=g) < 0.4).float()
        out.append(
            {
                "id": [f"b{i}_{j}" for j in range(b)],
                "image": torch.randn(b, 3, size, size, generator=g),
                "label": labels,
                "mask": mask,
                "has_mask": torch.ones(b, dtype=torch.bool),
                "hint": torch.rand(b, 1, size // 4, size // 4, generator=g),
            }
        )
    return out


class Loader(list):
    """An in-memory loader Lightning can take: a list of batches."""


class StepClock(L.Callback):
    """Intervals between the starts of consecutive training batches (the last one: start to end)."""

    def __init__(self):
        self.starts: list[float] = []
        self.end = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.starts.append(now())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.end = now()

    def per_step(self) -> float:
        t = self.starts[1:] + [self.end]  # the first step (loop start-up) is not counted
        steps = [b - a for a, b in zip(self.starts[1:], t[1:])]
        return sorted(steps)[len(steps) // 2]


def fit_ours(cfg: dict, module, batches: list[dict]) -> float:
    """Median seconds per step of `trainer.fit` over `batches`."""
    from wsss.tasks import build_trainer

    clock = StepClock()
    trainer = build_trainer(cfg, module, Path(cfg["paths"]["run_dir"]))
    trainer.callbacks.append(clock)
    module.world_size = 1
    trainer.fit(module, train_dataloaders=Loader(batches))
    return clock.per_step()


# -- the ceiling ------------------------------------------------------------------------------------------
def bare(module, total: int, accumulate: int = 1):
    """`module` set up to run its `training_step` without a Trainer over `total` batches; returns the step
    function. With `accumulate` > 1 the loss is divided by it and the optimiser and schedule step after every
    `accumulate` batches and after the last (Lightning's `accumulate_grad_batches`)."""
    module.setup("fit")
    module.total_steps = lambda: -(-total // accumulate)
    position = {"step": 0}
    module.batch_position = lambda: (position["step"], total)
    module.log = module.log_dict = lambda *a, **k: None
    found = module.configure_optimizers()
    opts, scheds = optimisers_of(found)
    if module.automatic_optimization:
        opt, sched = opts[0], scheds[0]

        def step(batch, i):
            position["step"] = i
            loss = module.training_step(batch, i)
            (loss / accumulate).backward()
            if (i + 1) % accumulate and i + 1 != total:
                return
            opt.step()
            opt.zero_grad()
            if sched is not None:  # saliency's Adam has no schedule
                sched.step()
    else:  # the stage drives its optimisers itself (P-NOC)
        module.optimizers = lambda: opts
        module.lr_schedulers = lambda: scheds
        module.manual_backward = lambda loss: loss.backward()
        module.toggled_optimizer = lambda opt: only_optimised_by(opt, opts)

        if accumulate != 1:
            raise ValueError("a stage that steps its optimisers itself does not accumulate gradients here")

        def step(batch, i):
            position["step"] = i
            module.training_step(batch, i)

    module.train()
    return step


def optimisers_of(found) -> tuple[list, list]:
    if isinstance(found, dict):
        return [found["optimizer"]], [found["lr_scheduler"]["scheduler"]]
    if isinstance(found, torch.optim.Optimizer):
        return [found], [None]
    return list(found[0]), list(found[1])


@contextlib.contextmanager
def only_optimised_by(opt, opts):
    """Gradients only for `opt`'s parameters while inside (what a two-optimiser loop must do)."""
    others = [p for o in opts if o is not opt for g in o.param_groups for p in g["params"]]
    state = [(p, p.requires_grad) for p in others]
    for p in others:
        p.requires_grad = False
    for g in opt.param_groups:
        for p in g["params"]:
            p.requires_grad = True
    try:
        yield
    finally:
        for p, r in state:
            p.requires_grad = r


def run_bare(step, batches: list[dict]) -> float:
    """Median seconds per step over `batches` (the first not counted, as for ours)."""
    times = []
    for i, batch in enumerate(batches):
        t = now()
        step(batch, i)
        times.append(now() - t)
    times = sorted(times[1:])
    return times[len(times) // 2]


def weights(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def accumulation(cfg: dict) -> int:
    return int(cfg["trainer"].get("accumulate_grad_batches") or 1)


def parity(cfg: dict, stage_cls, batches: list[dict]) -> float:
    """Both sides from the same initial weights over the same batches: the largest weight difference."""
    torch.manual_seed(0)
    a = stage_cls(cfg)
    b = copy.deepcopy(a)
    torch.manual_seed(1)  # the same dropout masks on both sides (DeepLab)
    fit_ours(cfg, a, batches)
    step = bare(b, len(batches), accumulation(cfg))
    torch.manual_seed(1)
    run_bare(step, batches)
    return check_equal(cfg["stage"]["name"], weights(a), weights(b), atol=1e-4)


def bench_stage(
    stage: str, size: int, batch: int, steps: int, repeats: int, work: Path, accumulate: int = 1
) -> tuple[str, float]:
    from hydra.utils import get_class

    cfg = stage_config(stage, size, batch, work, accumulate)
    stage_cls = get_class(cfg["stage"]["_target_"])
    batches = make_batches(cfg, steps)
    diff = parity(cfg, stage_cls, batches[:3])
    torch.manual_seed(0)
    ours_module = stage_cls(cfg)
    bare_module = copy.deepcopy(ours_module)
    bare_step = bare(bare_module, 10**6, accumulate)
    r = interleaved(
        lambda: fit_ours(cfg, ours_module, batches), lambda: run_bare(bare_step, batches), repeats
    )
    return r.row(f"{stage} training step (max \\|Δw\\| {diff:.1e})", f"≥ {GOAL}"), r.ratio


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--size", type=int, default=64, help="crop side in pixels")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=5, help="steps per timed block (the first is not counted)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved blocks of each side")
    p.add_argument("--accumulate", type=int, default=1, help="trainer.accumulate_grad_batches (not P-NOC)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    args = p.parse_args(argv)
    quiet_torch(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_oc(work, args.size, args.batch)
        print(
            f"# training steps, ours / ceiling; {machine()}; ResNet-18 from scratch, {args.size} px, "
            f"batch {args.batch}{f' x {args.accumulate} accumulated' if args.accumulate > 1 else ''}, "
            "32-true, CPU"
        )
        print("| what | ours | ceiling | ceiling / ours (range) | goal |\n|---|---|---|---|---|")
        for stage in args.stages:
            row, _ = bench_stage(
                stage, args.size, args.batch, args.steps, args.repeats, work, args.accumulate
            )
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
