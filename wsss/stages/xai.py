"""Stage `xai`: the multi-label CAM benchmark of thesis §B.1.2 (Tables 3, 4 and 6) on a trained classifier.

    python run.py stage=xai dataset=voc07 backbone=resnet101            # explains the classifier's last.ckpt
    python run.py -m stage=xai stage.label_source=detected,labels        # a sweep over a plain config value

The stage has no `fit`. It rebuilds the CAM network exactly as the checkpoint was trained (backbone and its
output stride, input channels, KUR and its α, all read from the checkpoint's saved hyperparameters), then
its task `explain` runs a Lightning `test` loop over `stage.split`: per batch, σ(f(x)) (with the
classifier's bias b when it was trained with one: y = σ(GAP·W + b), eq. 25) selects the evaluated labels C_i
(detections σ > `stage.threshold` as in the author's code, or the ground-truth labels), every selected method
explains all of them from one body forward (`wsss.xai`), and the soft-masked forwards update one
`MultiLabelCamMetrics` per method (per-class sums, reduced over DDP ranks). Rank 0 then writes:

* `xai/table.csv`, `xai/table.md`: methods as columns, %IC %AD %ADO %AR %ARO F1− F1+ as rows (Table 4);
  macro averages over classes (eq. 12–16, §A.1.3), the best value of each row in bold.
* `xai/results.json`: macro, micro and per-class values, pairs per class, seconds per method.
* `xai/figure.png`: sample images × methods, the maps of each image's first evaluated label overlaid.
* `metrics.json` (through `wsss.tasks.run`): `xai/<method>/<metric>` (floats), `xai/<method>/micro` and
  `xai/<method>/per_class` (dicts).

A class never evaluated (no detection in the split) has NaN per-class values and is skipped by the macro
average; a method whose every class is NaN (nothing detected at all) reports NaN. The tables, results and
figure are written by `wsss.xai.report` and `wsss.xai.figure`.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from albumentations.pytorch import ToTensorV2
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from wsss.artifacts import atomic_write_bytes, atomic_write_json, atomic_write_text
from wsss.data.datamodule import WSSSDataModule, collate
from wsss.data.datasets import TransformedSplit
from wsss.data.transforms import normalize
from wsss.models.backbone import Backbone
from wsss.models.cam_head import CAMNet, kur_alpha
from wsss.models.checkpoints import read_cam_network
from wsss.stage_contract import EXPLAIN, Task
from wsss.stages.base import Stage
from wsss.xai import MultiLabelCamMetrics, SplitModel, build_method, update_cam_metrics
from wsss.xai.figure import display_image, figure_png
from wsss.xai.methods import REGISTRY
from wsss.xai.methods.base import eval_mode, resize_maps
from wsss.xai.report import log_results, method_results, metrics_of, print_table, results_path, table_csv, \
    table_markdown

log = logging.getLogger(__name__)

LABEL_SOURCES = ("detected", "labels")


# -- the trained classifier -------------------------------------------------------------------------
def read_classifier_checkpoint(path: str | Path | None, num_classes: int, dataset: str,
                               runs_dir: str | Path | None = None) -> tuple[dict, dict]:
    """(CAMNet state dict without the `net.` prefix, the config the checkpoint was trained with).

    Loaded with `weights_only=True`. A missing file lists the classifier checkpoints that do exist for
    `dataset`; a checkpoint of another class count is a ValueError naming both counts.
    """
    if not path:
        raise ValueError("stage.checkpoint is not set: give the checkpoints/last.ckpt of a trained CAM "
                         "classifier (e.g. `python run.py stage=classifier ...`)")
    path = Path(path)
    if not path.is_file():
        found = sorted(Path(runs_dir).glob(f"*/{dataset}/*/*/checkpoints/last.ckpt")) if runs_dir else []
        if found:
            hint = ("; checkpoints found for this data set: " + ", ".join(map(str, found[:8]))
                    + " (pick one with backbone=<name>, stage.classifier_run=<run_name> or "
                    "stage.checkpoint=<path>)")
        else:
            hint = f"; train one first: `python run.py stage=classifier dataset={dataset} backbone=...`"
        raise FileNotFoundError(f"stage.checkpoint={str(path)!r} does not exist{hint}")
    return read_cam_network(path, num_classes, "stage.checkpoint", f"dataset {dataset!r}")


def explained_size(setting, trained: dict, dataset: dict) -> int | None:
    """`stage.image_size`: `classifier` = the crop size the classifier was trained at (A.1.2: the images are
    explained at the classifier's input size; from its checkpoint's config, else the data set's crop_size),
    a positive integer, or null (each image at its own size, batch of 1)."""
    if setting is None:
        return None
    if setting == "classifier":
        size = (trained.get("dataset") or {}).get("crop_size") if trained else None
        if not size:
            log.warning("the checkpoint has no saved dataset.crop_size: explaining at dataset.crop_size=%s",
                        dataset["crop_size"])
        return int(size or dataset["crop_size"])
    if isinstance(setting, int) and not isinstance(setting, bool) and setting > 0:
        return setting
    raise ValueError(f"stage.image_size={setting!r}: expected 'classifier' (the classifier's training size), "
                     "a positive integer, or null (each image at its own size)")


def kur_settings(trained: dict, override: dict | None, num_classes: int) -> tuple[bool, float]:
    """(KUR on, α) as the classifier was trained (thesis eq. 25, §B.1.4); `override` only for a checkpoint
    without saved hyperparameters."""
    kur = ((trained.get("stage") or {}).get("kur")) if trained else None
    if kur is None:
        kur = override or {}
        if not override:
            log.warning("the checkpoint has no saved stage.kur: assuming a classifier trained without KUR "
                        "(set stage.kur={enabled: true, alpha: ...} otherwise)")
    return bool(kur.get("enabled", False)), kur_alpha(kur, num_classes)


def explain_transform(size: int | None, mean, std) -> A.Compose:
    """Short side resized to `size`, centre crop `size`² (thesis A.1.2), normalised; None keeps the image."""
    ops = [] if size is None else [
        A.SmallestMaxSize(max_size=int(size), interpolation=cv2.INTER_LINEAR,
                          mask_interpolation=cv2.INTER_NEAREST),
        A.CenterCrop(int(size), int(size))]
    return A.Compose([*ops, normalize(mean, std), ToTensorV2()])


def method_options(scfg: dict, name: str) -> dict:
    """The constructor options of method `name` from `stage.method_options.<name>` (nulls dropped)."""
    options = dict(scfg.method_options.get(name) or {})  # a method without options: none
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if v is not None}


def label_set(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, L) class ids (-1 padding) -> (B, C) 0/1 float label sets."""
    one_hot = F.one_hot(targets.clamp(min=0), num_classes).float() * (targets >= 0)[..., None]
    return one_hot.sum(dim=1).clamp(max=1)


class CachedBody(nn.Module):
    """The backbone, returning already computed features when called on the very tensor they came from
    (every method starts with a body forward of the batch; Score-CAM's masked inputs are new tensors)."""

    def __init__(self, backbone: nn.Module, images: torch.Tensor, features: torch.Tensor):
        super().__init__()
        self.backbone = backbone
        self.images, self.features = images, features

    def forward(self, x: torch.Tensor):
        return self.features if x is self.images else self.backbone(x)


# -- the stage --------------------------------------------------------------------------------------
class XAIStage(Stage):
    """Explains a trained CAM classifier with every method of `stage.methods` and scores the maps.

    Config (conf/stage/xai.yaml): checkpoint, split, methods, method_options, label_source
    (detected | labels), threshold, batch_size, image_size, max_images, mask_batch_size, figure, kur.
    """

    tasks = {"explain": Task(lambda ctx: explain(ctx), reads=(EXPLAIN,))}  # `explain` is defined below
    default_tasks = ("explain",)

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        s = self.scfg
        self.method_names = list(s.methods or [])
        unknown = [m for m in self.method_names if m not in REGISTRY]
        if not self.method_names or unknown:
            raise ValueError(f"stage.methods={self.method_names}: unknown or empty; expected some of "
                             f"{', '.join(REGISTRY)}")
        if len(set(self.method_names)) != len(self.method_names):
            raise ValueError(f"stage.methods={self.method_names} lists a method twice")
        if s.label_source not in LABEL_SOURCES:
            raise ValueError(f"stage.label_source={s.label_source!r}; expected one of {LABEL_SOURCES}")
        self.methods = {name: build_method(name, **method_options(s, name)) for name in self.method_names}
        state, trained = read_classifier_checkpoint(s.checkpoint, self.num_classes,
                                                    cfg["dataset"]["name"], cfg["paths"].get("runs_dir"))
        self.image_size = explained_size(s.image_size, trained, cfg["dataset"])
        self.net = self.rebuild_net(trained, has_bias="head.bias" in state)
        self.net.load_state_dict(state)
        self.net.requires_grad_(False)
        if s.channels_last:
            self.use_channels_last()
        threshold, source = float(s.threshold), s.label_source
        self.metrics = nn.ModuleDict({name: MultiLabelCamMetrics(self.num_classes, threshold, source)
                                      for name in self.method_names})
        self.seconds = {name: 0.0 for name in self.method_names}
        self.results: dict | None = None
        self.eval()
        log.info("explaining %s (backbone %s, KUR %s, %s)", s.checkpoint, self.net.backbone.name,
                 f"on, α={self.net.head.kur_alpha:g}" if self.net.head.kur else "off",
                 "with bias" if self.net.head.bias is not None else "bias-free")

    def use_channels_last(self) -> None:
        """Weights and inputs in channels-last layout: same maps, faster convolutions for ResNets on CPU
        (bench/bench_xai.py), slower for some nets (ResNeSt), hence a switch."""
        self.net.to(memory_format=torch.channels_last)
        for method in self.methods.values():
            method.channels_last = True

    def rebuild_net(self, trained: dict, has_bias: bool) -> CAMNet:
        """The CAMNet as trained: backbone, output stride, input channels, KUR and the head's bias from the
        checkpoint."""
        b = dict(trained.get("backbone") or self.cfg["backbone"])
        if b.get("name") != self.cfg["backbone"]["name"]:
            raise ValueError(f"stage.checkpoint={self.scfg.checkpoint!r} was trained with backbone "
                             f"{b.get('name')!r} but this run has backbone={self.cfg['backbone']['name']!r}; "
                             f"run with backbone={b.get('name')} so the run folder names the right network")
        in_chans = (trained.get("dataset") or {}).get("in_chans") or self.cfg["dataset"].get("in_chans") or 3
        # pretrained=False: every weight comes from the checkpoint, nothing is downloaded
        backbone = Backbone(b["name"], pretrained=False, weights_path=None,
                            output_stride=b.get("output_stride"), in_chans=in_chans)
        self.norm_mean, self.norm_std = backbone.mean, backbone.std
        kur, alpha = kur_settings(trained, self.scfg.kur, self.num_classes)
        return CAMNet(backbone, self.num_classes, kur=kur, kur_alpha=alpha, bias=has_bias)

    def train(self, mode: bool = True) -> "XAIStage":
        """Always in eval mode: BatchNorm must use (and never update) the trained statistics. (Lightning
        restores each submodule's flag after its test loop without calling this; explain_batch therefore
        also runs under `eval_mode`.)"""
        return super().train(False)

    def split_model(self, body: nn.Module | None = None) -> SplitModel:
        """The classifier split at its last feature map: effective (KUR) weight read at call time, bias in the
        logits (so in detection, Score-CAM's scores and every metric) but never in a map."""
        return SplitModel.from_cam_net(self.net, body)

    # -- data ---------------------------------------------------------------------------------------
    @property
    def split_name(self) -> str:
        return self.scfg.split or self.cfg["dataset"]["val_split"]

    def explained_ids(self) -> list[str]:
        ids = list(self.datamodule_split().ids)
        limit = self.scfg.max_images
        return ids[:int(limit)] if limit else ids

    def datamodule(self) -> WSSSDataModule:
        """The data set's splits only: the stage explains through its own transform and never trains (no
        augmentation, no batch scope)."""
        return WSSSDataModule(self.cfg["dataset"], batch_size=self.batch_size(), mean=self.norm_mean,
                              std=self.norm_std, num_workers=self.cfg["num_workers"])

    def datamodule_split(self):
        dm = getattr(self, "_dm", None)
        if dm is None:
            self._dm = dm = self.datamodule()
        return dm.split(self.split_name)

    def transform(self) -> A.Compose:
        return explain_transform(self.image_size, self.norm_mean, self.norm_std)

    def batch_size(self) -> int:
        # images at their own size cannot be stacked
        return int(self.scfg.batch_size) if self.image_size else 1

    def test_dataloader(self) -> DataLoader:
        """This rank's shard of the explained images (each image on exactly one rank, none padded in)."""
        ids = self.explained_ids()
        trainer = self._trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        ds = TransformedSplit(self.datamodule_split(), self.transform(), ids[rank::world])
        sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=False)  # Lightning must not re-shard
        return DataLoader(ds, batch_size=self.batch_size(), sampler=sampler, collate_fn=collate,
                          num_workers=self.cfg.get("num_workers", 0), pin_memory=torch.cuda.is_available())

    # -- one batch ----------------------------------------------------------------------------------
    def explain_batch(self, images: torch.Tensor, labels: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(probabilities (B, C), evaluated targets (B, L), {method: maps (B, L, h, w)}), in eval mode."""
        with eval_mode(self.net):
            return self._explain_batch(images, labels)

    def _explain_batch(self, images: torch.Tensor, labels: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        if self.scfg.channels_last:  # once here, so that the methods' cached body pass matches
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            features = self.net.features(images)
        model = self.split_model(CachedBody(self.net.backbone, images, features))  # one body pass for all
        any_metric = next(iter(self.metrics.values()))
        with torch.no_grad():
            probs = torch.sigmoid(model.head(features).float())
        targets = any_metric.select_targets(probs, labels)
        context = label_set(targets, self.num_classes)  # MinMax contrasts the same label set that is scored
        maps = {}
        for name, method in self.methods.items():
            start = time.perf_counter()
            maps[name] = method(model, images, targets, context=context)
            if images.is_cuda:
                torch.cuda.synchronize(images.device)
            self.seconds[name] += time.perf_counter() - start
        return probs, targets, maps

    def test_step(self, batch: dict, batch_idx: int) -> None:
        # Lightning runs this under inference mode; gradient forms (non-GAP heads) need autograd tensors.
        with torch.inference_mode(False), torch.enable_grad():
            images, labels = batch["image"].clone(), batch["label"].clone()
            probs, targets, maps = self.explain_batch(images, labels)
            if not (targets >= 0).any():
                return  # nothing evaluated in this batch
            model = self.split_model()
            for name, metric in self.metrics.items():
                update_cam_metrics(metric, model, images, maps[name], targets, probs,
                                   batch_size=int(self.scfg.mask_batch_size))

    def on_test_epoch_end(self) -> None:
        """Reduce every method's metric over ranks; rank 0 keeps and saves the results."""
        classes = list(self.datamodule_split().classes)
        results = {}
        for name, metric in self.metrics.items():
            values = metric.compute()  # all ranks: the per-class sums are gathered here
            results[name] = method_results(values, classes, self.seconds[name])
            metric.reset()
        if self.trainer.is_global_zero:
            self.results = results
            atomic_write_json(results_path(self.run_dir), {"methods": results, "classes": classes,
                                                           "label_source": self.scfg.label_source,
                                                           "split": self.split_name})


# -- the task ----------------------------------------------------------------------------------------
def explain(ctx) -> dict:
    """Runs every method over `stage.split` in a Lightning test loop, then (rank 0) writes the table,
    the figure and the results, logs them, and prints the table."""
    module: XAIStage = ctx.module
    if not isinstance(module, XAIStage):
        raise TypeError(f"task `explain` needs stage=xai, got stage {ctx.plain['stage']['name']!r}")
    started = time.perf_counter()
    ctx.trainer.test(module, verbose=False)
    if not ctx.trainer.is_global_zero:
        return {}
    results = module.results or json.loads(results_path(ctx.run_dir).read_text())["methods"]  # ddp_spawn
    methods = module.method_names
    s, p = module.scfg, ctx.plain
    title = (f"xai · {p['dataset']['name']} {module.split_name} · {p['backbone']['name']}"
             f"{' + KUR' if module.net.head.kur else ''} · labels: {s.label_source}")
    out_dir = ctx.run_dir / "xai"
    atomic_write_text(out_dir / "table.csv", table_csv(results, methods))
    atomic_write_text(out_dir / "table.md", table_markdown(results, methods, f"{title} (macro %, eq. 12–16)"))
    metrics = metrics_of(results)
    metrics.update({"xai/images": len(module.explained_ids()), "xai/label_source": s.label_source,
                    "xai/seconds": time.perf_counter() - started})
    figure = s.figure
    images = {}
    if int(figure.num_images) > 0:
        png = sample_figure(module, int(figure.num_images), float(figure.alpha))
        if png is not None:
            atomic_write_bytes(out_dir / "figure.png", png)
            images["xai/figure"] = out_dir / "figure.png"
    log_results(ctx.trainer.loggers, metrics, results, methods, images)
    print_table(results, methods, title)
    return metrics


def sample_figure(module: XAIStage, num_images: int, alpha: float = 0.5) -> bytes | None:
    """The figure of the first `num_images` explained images, each with the maps of its first evaluated
    label (its most probable class when none is evaluated)."""
    ids = module.explained_ids()[:num_images]
    if not ids:
        return None
    ds = TransformedSplit(module.datamodule_split(), module.transform(), ids)
    classes = list(module.datamodule_split().classes)
    weight = next(module.net.parameters())  # outside the test loop: inputs in the network's precision
    device = weight.device
    images, titles, per_method = [], [], {m: [] for m in module.method_names}
    for item in ds:  # one at a time: images may differ in size when stage.image_size is null
        x, y = item["image"][None].to(device, weight.dtype), item["label"][None].to(device)
        with torch.inference_mode(False), torch.enable_grad():
            probs, targets, maps = module.explain_batch(x, y)
        label = int(targets[0, 0]) if targets.shape[1] and targets[0, 0] >= 0 else int(probs[0].argmax())
        shown = "" if targets.shape[1] and targets[0, 0] >= 0 else " (not evaluated)"
        titles.append(f"{item['id']}\n{classes[label]} p={float(probs[0, label]):.2f}{shown}")
        images.append(display_image(item["image"], module.norm_mean, module.norm_std))
        for m in module.method_names:
            if shown:  # explain the shown class itself
                with torch.inference_mode(False), torch.enable_grad():
                    one = module.methods[m](module.split_model(), x, torch.tensor([[label]], device=device))
            else:
                one = maps[m][:, :1]
            full = resize_maps(one[0, 0].float(), tuple(x.shape[-2:])).clamp(0, 1)
            per_method[m].append(full.cpu().numpy())
    return figure_png(images, titles, {m: np.stack(v) for m, v in per_method.items()}, alpha)
