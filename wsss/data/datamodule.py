"""One LightningDataModule for every stage: which splits, which transform, which batch size."""
from __future__ import annotations

import logging
import os

import pytorch_lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler

from wsss.data import transforms as T
from wsss.data.datasets import TransformedSplit, build_split
from wsss.data.sampler import EpochSampler, ResumableLoader

log = logging.getLogger(__name__)


def collate(items: list[dict]) -> dict:
    out = {"id": [it["id"] for it in items], "has_mask": torch.tensor([it["has_mask"] for it in items])}
    for key in ("image", "mask", "label"):
        out[key] = torch.stack([it[key] for it in items])
    return out


class WSSSDataModule(L.LightningDataModule):
    """
    Args:
        dataset: the `dataset` config (plain dict).
        batch_size: images per device per step.
        mean, std: normalisation of the backbone.
        augment: `hflip`, `color_jitter`, `randaugment`, `randaugment_n`, `randaugment_m`.
    """

    def __init__(self, dataset: dict, batch_size: int, mean, std, augment: dict | None = None, num_workers: int = 0,
                 val_batch_size: int | None = None):
        super().__init__()
        self.cfg = dataset
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment = dict(augment or {})
        self.num_workers = num_workers
        self._splits: dict = {}
        self.predict_ids: list[str] | None = None
        self.predict_split: str | None = None
        self._train_loader: ResumableLoader | None = None
        self._train_order: dict | None = None  # the position read from a checkpoint, for the next train loader

    def split(self, name: str):
        if name not in self._splits:
            self._splits[name] = build_split(self.cfg, name)
        return self._splits[name]

    @property
    def num_classes(self) -> int:
        return self.split(self.cfg["train_split"]).num_classes

    @property
    def classes(self) -> tuple[str, ...]:
        return self.split(self.cfg["train_split"]).classes

    def _loader(self, ds, batch_size, shuffle, drop_last=False, sampler=None, collate_fn=collate) -> DataLoader:
        options = dict(batch_size=batch_size, num_workers=self.num_workers, collate_fn=collate_fn, drop_last=drop_last,
                       persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())
        if shuffle and sampler is None:  # training: an order that a resumed run continues (wsss/data/sampler.py)
            self._train_loader = ResumableLoader(ds, self._epoch_sampler(ds), **options)
            if self._train_order is not None:
                self._train_loader.load_state_dict(self._train_order)
                self._train_order = None  # used once
            return self._train_loader
        return DataLoader(ds, shuffle=False, sampler=sampler, **options)

    # Lightning stores this in every checkpoint and gives it back before the first batch of a resumed fit (it
    # builds the train loader earlier, for the LR schedule's step count, so the loader's own state would be late).
    def state_dict(self) -> dict:
        return {"train_order": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state: dict) -> None:
        order = state.get("train_order")
        if order is not None and self._train_loader is not None:
            self._train_loader.load_state_dict(order)
        else:
            self._train_order = order

    def _epoch_sampler(self, ds) -> EpochSampler:
        """This rank's shard of the permutation of `(seed, epoch)`, from the epoch the fit loop (re)starts at."""
        trainer = self.trainer
        seed = int(os.environ.get("PL_GLOBAL_SEED", torch.initial_seed()))  # what seed_everything set, on every rank
        if trainer is None:
            return EpochSampler(ds, seed)
        epoch = trainer.fit_loop.epoch_progress.current.processed  # the value Lightning passes to set_epoch
        return EpochSampler(ds, seed, num_replicas=trainer.world_size, rank=trainer.global_rank, epoch=epoch)

    def train_dataloader(self) -> DataLoader:
        split = self.split(self.cfg["train_split"])
        ids = [i for i in split.ids if split.label(i).sum() > 0]
        if len(ids) < len(split.ids):
            log.warning("%d images of split %r have no label and are left out of training",
                        len(split.ids) - len(ids), self.cfg["train_split"])
        if not ids:
            raise ValueError(f"split {self.cfg['train_split']!r} has no image with a label")
        c = self.cfg
        tf = T.train_transform(c["crop_size"], c["min_size"], c["max_size"], self.mean, self.std, **self.augment)
        ds = TransformedSplit(split, tf, ids, require_label=True)
        drop_last = len(ds) >= 2 * self.batch_size
        return self._loader(ds, self.batch_size, shuffle=True, drop_last=drop_last)

    def val_dataloader(self) -> DataLoader:
        split = self.split(self.cfg["val_split"])
        tf = T.val_transform(self.cfg["crop_size"], self.mean, self.std)
        return self._loader(TransformedSplit(split, tf), self.val_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Images at full size, one per step, this rank's shard of `predict_ids` only.

        The shard is taken here (inside the launched process) and the sampler is a one-replica
        DistributedSampler so that Lightning does not shard again.
        """
        split = self.split(self.predict_split)
        ids = list(self.predict_ids if self.predict_ids is not None else split.ids)
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        shard = ids[rank::world]
        ds = TransformedSplit(split, T.eval_transform(self.mean, self.std), shard)
        sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=False)
        return self._loader(ds, 1, shuffle=False, sampler=sampler)
