"""What every stage shares: the resolved config, the data module, the backbone, the optimiser."""
from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as L
import torch

from wsss.artifacts import ArtifactDir
from wsss.data.datamodule import WSSSDataModule
from wsss.hyperparameters import check_hyperparameters
from wsss.models.backbone import Backbone
from wsss.models.checkpoints import load_checkpoint, load_matching, state_dict_of
from wsss.optim import param_groups, sgd_poly
from wsss.stage_contract import Artifact, Task
from wsss.tasks import FIT_TASK
from wsss.stage_schema import Settings

log = logging.getLogger(__name__)


def load_backbone_from(backbone: torch.nn.Module, path: str | Path, backbone_name: str,
                       prefix: str = "net.backbone.") -> None:
    """Initialise the backbone from a stage checkpoint (e.g. the classifier's), tensors under `prefix`; a
    checkpoint of another backbone is refused naming both (not a state-dict dump)."""
    state = state_dict_of(load_checkpoint(path, "stage.backbone_checkpoint"))
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not picked:
        raise ValueError(f"{path}: no tensor under {prefix!r}; expected a checkpoint of a CAM stage")
    load_matching(backbone, picked, path, "stage.backbone_checkpoint", backbone_name)
    log.info("backbone initialised from %s (%d tensors)", path, len(picked))


class Stage(L.LightningModule):
    """A LightningModule built from the whole resolved config (a plain dict).

    Only plain values are saved as hyperparameters so checkpoints load with
    `torch.load(weights_only=True)`.
    """

    # What the stage is (wsss/stage_contract.py): each stage file declares its own.
    tasks: dict[str, Task] = {"fit": FIT_TASK}   # every task `tasks=[...]` may name
    default_tasks: tuple[str, ...] = ("fit",)      # the ones run.py runs, in this order
    artifact: Artifact | None = None               # what `predict_step` writes into `self.writer`
    not_output_keys: tuple[str, ...] = ()          # stage keys that change none of its artifacts

    def __init__(self, cfg: dict):
        super().__init__()
        check_hyperparameters(cfg)  # `stage.lr=-0.1: expected a positive number`, before anything is built
        self.save_hyperparameters({"cfg": cfg})
        self.cfg = cfg
        self.scfg = Settings(cfg["stage"])  # read as attributes: s.lr, s.inference.scales
        self.run_dir = Path(cfg["paths"]["run_dir"])
        self.writer: ArtifactDir | None = None  # the folder the running predict fills (tasks.predict_missing)

    # -- data ---------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return int(self.cfg["dataset"]["num_classes"])

    #: devices taking part in a training step (the trainer's world size; set before the data module is built)
    world_size: int = 1

    def device_batch_size(self) -> int:
        """The loaders' batch: `stage.batch_size` as it stands under `batch_scope: device` (Lightning's
        convention), or split over the devices under `global` (the batch of one optimisation step, as the papers
        and their DataParallel code state it: 32 on 4 GPUs is 8 per device)."""
        batch = int(self.scfg.batch_size)
        if self.scfg.batch_scope == "device" or self.world_size == 1:
            return batch
        if batch % self.world_size:
            raise ValueError(f"stage.batch_size={batch} with stage.batch_scope=global cannot be split evenly over "
                             f"{self.world_size} devices; pick a multiple of {self.world_size}, fewer devices "
                             f"(trainer.devices), or stage.batch_scope=device ({batch} per device)")
        return batch // self.world_size

    def datamodule(self) -> WSSSDataModule:
        s = self.scfg
        return WSSSDataModule(self.cfg["dataset"], batch_size=self.device_batch_size(), mean=self.norm_mean,
                              std=self.norm_std, augment=s.augment, num_workers=self.cfg["num_workers"])

    norm_mean: tuple = (0.485, 0.456, 0.406)
    norm_std: tuple = (0.229, 0.224, 0.225)

    def make_backbone(self, output_stride: int | None = None, in_chans: int | None = None) -> Backbone:
        b = self.cfg["backbone"]
        os_ = b.get("output_stride") if output_stride is None else output_stride
        backbone = Backbone(b["name"], pretrained=b["pretrained"], weights_path=b.get("weights_path"),
                            output_stride=os_, in_chans=in_chans or self.cfg["dataset"].get("in_chans", 3))
        d, n = self.cfg["dataset"], in_chans or self.cfg["dataset"].get("in_chans", 3)
        mean, std = tuple(d.get("mean") or backbone.mean), tuple(d.get("std") or backbone.std)
        if len(mean) < n:  # extra channels reuse the first channel's statistics
                           # (lucasdavid/PNOC@6c8950a:datasets/hpa.py: HPA yellow = red)
            mean, std = mean + (mean[0],) * (n - len(mean)), std + (std[0],) * (n - len(std))
        if len(mean) != n or len(std) != n:
            raise ValueError(f"dataset.mean/std have {len(mean)}/{len(std)} values but the input has {n} channels")
        self.norm_mean, self.norm_std = mean, std
        return backbone

    # -- optimisation -------------------------------------------------------------------------
    def pretrained_modules(self) -> list[torch.nn.Module]:
        raise NotImplementedError

    def new_modules(self) -> list[torch.nn.Module]:
        raise NotImplementedError

    def total_steps(self) -> int:
        return int(self.trainer.estimated_stepping_batches)

    def batch_position(self) -> tuple[int, int]:
        """(0-based index of the current training batch over the whole run, batches in the run).

        The counter of the loss-weight ramps (lucasdavid/PNOC@f250e0d:tools/ai/optim_utils.py: micro-batches,
        not optimiser steps). It is derived from the epoch and the batch index, which Lightning restores on
        resume and which are the same on every DDP rank; `global_step` is not used because every `opt.step()`
        of a manual optimisation counts in it.
        """
        t = self.trainer
        if t.num_training_batches == float("inf"):
            t.estimated_stepping_batches  # sets the train loader up (configure_optimizers runs before it)
        per_epoch = int(t.num_training_batches) if t.num_training_batches != float("inf") else 0
        if per_epoch <= 0 or t.max_epochs is None or t.max_epochs < 0:
            per_epoch = per_epoch or 1
            total = int(t.estimated_stepping_batches) * t.accumulate_grad_batches
        else:
            total = per_epoch * max(1, t.max_epochs)
        step = t.current_epoch * per_epoch + max(0, t.fit_loop.epoch_loop.batch_idx)
        return step, max(1, total)

    def configure_optimizers(self):
        s = self.scfg
        groups = param_groups(self.pretrained_modules(), self.new_modules(), s.lr, s.weight_decay,
                              s.lr_alpha_bias, s.lr_alpha_new)
        opt, sched = sgd_poly(groups, self.total_steps(), s.momentum, s.nesterov,
                              s.poly_power)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- checkpoints --------------------------------------------------------------------------
    def load_weights(self, path: str | Path) -> None:
        """Load the state dict of a trained stage checkpoint (weights only, no pickle)."""
        state = state_dict_of(load_checkpoint(path, "stage.checkpoint"))
        self.check_class_count(state, path)
        load_matching(self, state, path, "stage.checkpoint", self.cfg["backbone"]["name"])

    def check_class_count(self, state: dict, path: Path) -> None:
        pass
