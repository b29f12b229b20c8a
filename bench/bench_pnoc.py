"""P-NOC training-step throughput: our Lightning stage under bf16-mixed against plain PyTorch references.

Measured in the same run, on the same synthetic batch (random images, random multi-hot labels):
  (a) reference fp32: the P-NOC step (generator: full image + 2x2 tiles + soft-erased image through the
      frozen oc; then the oc on the hard-erased image) written here in eager PyTorch, strict fp32
      (TF32 off for convolutions and matmuls: the "plain" baseline);
  (b) ours bf16:      `PNOCStage.training_step` driven by a real `Trainer(precision="bf16-mixed")` over an
      in-memory loader of the same batch (manual optimisation, toggled optimisers, schedulers, logging:
      everything a training run does except data loading and checkpointing); TF32 on
      (`matmul_precision: high`, the project default);
  (c) floor bf16:     one plain bf16 classifier step (forward, MLSM loss, backward, SGD) of the same net.
A P-NOC step costs about three classifier steps (full image, tiles, oc forward+backward twice), hence the
goals: (b)/(a) >= 2.3 and (b) >= 0.8 * (c) / 3.

GPU:  python bench/bench_pnoc.py                    (ResNeSt-269 at 512 x 512, batch 16)
CPU smoke check: python bench/bench_pnoc.py --device cpu --size 64 --batch 2 --backbone resnet18 --steps 2
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch

from wsss.losses.classification import multilabel_soft_margin
from wsss.losses.occse import occse_loss, sample_erased_classes, soft_erase_classes
from wsss.losses.pnoc import hard_erase, noc_loss
from wsss.losses.puzzle import merge, puzzle_losses, tile
from wsss.models.backbone import Backbone
from wsss.models.cam_head import CAMNet

NUM_CLASSES = 20


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")


def make_net(backbone: str, device: str) -> CAMNet:
    return CAMNet(Backbone(backbone, pretrained=False, output_stride=16), NUM_CLASSES).to(device)


def make_batch(batch: int, size: int, device: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(batch, NUM_CLASSES, generator=g) < 0.15).float()
    labels[torch.arange(batch), torch.randint(0, NUM_CLASSES, (batch,), generator=g)] = 1.0
    images = torch.randn(batch, 3, size, size, generator=g).to(device)
    return {"id": [f"img{i}" for i in range(batch)], "image": images, "label": labels.to(device),
            "mask": torch.full((batch, size, size), 255, dtype=torch.long, device=device),
            "has_mask": torch.zeros(batch, dtype=torch.bool, device=device)}


def timed(step, device: str, steps: int, warmup: int) -> tuple[float, float]:
    """Seconds per step and peak GiB of `step()` after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    sync(device)
    reset_peak(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - t) / steps, peak_gib(device)


# -- (a) the plain fp32 reference --------------------------------------------------------------------------
def reference_pnoc(args) -> tuple[float, float]:
    """The P-NOC step of Algorithm 1 in eager PyTorch (same losses and ramps as the stage, fixed weights)."""
    dev = args.device
    gen, oc = make_net(args.backbone, dev).train(), make_net(args.backbone, dev).eval()
    for m in oc.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.requires_grad_(False)
    oc_params = [p for p in oc.parameters() if p.requires_grad]
    gen_opt = torch.optim.SGD(gen.parameters(), lr=0.01)
    oc_opt = torch.optim.SGD(oc_params, lr=0.01)
    batch = make_batch(args.batch, args.size, dev)
    x, y = batch["image"], batch["label"]
    step_no = [0]

    def step():
        erased = sample_erased_classes(y, torch.Generator().manual_seed(step_no[0]))
        step_no[0] += 1
        for p in oc_params:  # the generator's update leaves oc alone
            p.requires_grad_(False)
        logits, cams = gen(x)
        _, tile_cams = gen(tile(x))
        pz = puzzle_losses(cams, merge(tile_cams), y, 0.1)
        oc_logits, _ = oc(soft_erase_classes(x, cams, erased))
        loss = (multilabel_soft_margin(logits, y, 0.1) + pz.classification + 2.0 * pz.reconstruction
                + 0.6 * occse_loss(oc_logits, y, erased, 0.1))
        gen_opt.zero_grad(set_to_none=True)
        loss.backward()
        gen_opt.step()
        for p in oc_params:
            p.requires_grad_(True)
        noc_logits, _ = oc(hard_erase(x, cams.detach(), erased, 0.2))
        oc_opt.zero_grad(set_to_none=True)
        noc_loss(noc_logits, y, 0.5, 0.1).backward()
        oc_opt.step()

    return timed(step, dev, args.steps, args.warmup)


# -- (c) the bf16 classifier floor ---------------------------------------------------------------------------
def classifier_floor(args) -> tuple[float, float]:
    dev = args.device
    net = make_net(args.backbone, dev).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    batch = make_batch(args.batch, args.size, dev)

    def step():
        with torch.autocast(dev.split(":")[0], dtype=torch.bfloat16):
            logits, _ = net(batch["image"])
            loss = multilabel_soft_margin(logits, batch["label"], 0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return timed(step, dev, args.steps, args.warmup)


# -- (b) our stage through a Trainer -------------------------------------------------------------------------
def stage_config(args, tmp: Path, oc_ckpt: Path) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from wsss.app import CONF_DIR

    overrides = ["stage=pnoc", "dataset=synthetic", f"dataset.args.num_classes={NUM_CLASSES}",
                 f"dataset.crop_size={args.size}", f"backbone={args.backbone}", "backbone.pretrained=false",
                 f"stage.batch_size={args.batch}", f"stage.oc_checkpoint={oc_ckpt}", "stage.max_epochs=1",
                 f"paths.root={tmp}", f"paths.data_dir={tmp}", f"paths.runs_dir={tmp}",
                 f"paths.run_dir={tmp / 'run'}"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg.pop("hydra", None)
    return cfg


class RepeatedBatch:
    """An in-memory loader yielding the same device batch (a plain list would be read as several loaders)."""

    def __init__(self, batch: dict, length: int):
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        return (self.batch for _ in range(self.length))


class StepTimer:
    """Lightning callback timing the training batches after `warmup`."""

    def __new__(cls, device: str, warmup: int):
        from pytorch_lightning import Callback

        class _Timer(Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if batch_idx == warmup:
                    sync(device)
                    reset_peak(device)
                    self.t0 = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                sync(device)
                self.t1, self.n = time.perf_counter(), batch_idx + 1 - warmup

        return _Timer()


def our_stage(args) -> tuple[float, float]:
    import pytorch_lightning as L

    from wsss.stages.pnoc import PNOCStage

    dev = args.device
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        oc_ckpt = tmp / "oc.ckpt"
        oc_state = make_net(args.backbone, "cpu").state_dict()
        torch.save({"state_dict": {f"net.{k}": v for k, v in oc_state.items()}}, oc_ckpt)
        module = PNOCStage(stage_config(args, tmp, oc_ckpt))
        batch = make_batch(args.batch, args.size, dev)
        loader = RepeatedBatch(batch, args.warmup + args.steps)
        timer = StepTimer(dev, args.warmup)
        trainer = L.Trainer(accelerator="gpu" if dev.startswith("cuda") else "cpu", devices=1,
                            precision="bf16-mixed", max_epochs=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            limit_val_batches=0, callbacks=[timer], default_root_dir=tmp)
        trainer.fit(module, train_dataloaders=loader)
        return (timer.t1 - timer.t0) / timer.n, peak_gib(dev)


@contextlib.contextmanager
def strict_fp32():
    saved = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved[0]
        torch.set_float32_matmul_precision(saved[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backbone", default="resnest269")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_pnoc: no CUDA device here; this benchmark is for a GPU (CPU smoke check: see --help)")
        return
    torch.backends.cudnn.benchmark = args.device.startswith("cuda")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"P-NOC step, {args.backbone} {args.size}x{args.size}, batch {args.batch}, "
          f"{args.steps} timed steps "
          f"after {args.warmup} warm-up, device: {name}")

    results = {}
    with strict_fp32():
        results["(a) reference fp32 eager"] = reference_pnoc(args)
    torch.set_float32_matmul_precision("high")
    results["(b) ours PNOCStage bf16-mixed"] = our_stage(args)
    results["(c) classifier step bf16 (floor)"] = classifier_floor(args)

    print(f"{'run':34s} {'s/step':>8s} {'img/s':>8s} {'peak GiB':>9s}")
    for k, (sec, mem) in results.items():
        print(f"{k:34s} {sec:8.3f} {args.batch / sec:8.2f} {mem:9.2f}")
    a, b, c = (args.batch / results[k][0] for k in results)
    print(f"(b)/(a) = {b / a:.2f}   (goal >= 2.3)")
    print(f"(b)/((c)/3) = {b / (c / 3):.2f}   (goal >= 0.8)")


if __name__ == "__main__":
    main()
