"""Sending images and tables to whatever loggers a run has (W&B, TensorBoard; CSV keeps scalars only).

Stages call these on rank 0 after evaluating, e.g. at the end of the `evaluate` task:

    log_evaluation(trainer.loggers, metrics, run_dir, artifact="cams", dataset=ds, artifact_dir=cams.root)

`offline_history` reads back what an offline W&B run recorded (tests, and checking a run before `wandb sync`).
"""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from wsss.artifacts import PALETTE


def _kind(logger: Any) -> str:
    names = {cls.__name__ for cls in type(logger).__mro__}  # subclasses too (wsss.loggers' flat-config W&B logger)
    return "wandb" if "WandbLogger" in names else "tensorboard" if "TensorBoardLogger" in names else "other"


def log_scalars(loggers: Iterable, metrics: dict, step: int | None = None) -> None:
    """The float entries of `metrics` (lists, dicts and counts are left to metrics.json)."""
    scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, float)}
    if scalars:
        for lg in loggers:
            lg.log_metrics(scalars, step=step)


def log_images(loggers: Iterable, images: dict[str, np.ndarray | str | Path], step: int | None = None,
               captions: dict[str, str] | None = None) -> None:
    """`images`: key -> (H, W, 3) uint8 array or an image file (PNG)."""
    arrays = {k: _as_array(v) for k, v in images.items()}
    for lg in loggers:
        kind = _kind(lg)
        for key, arr in arrays.items():
            if kind == "wandb":
                extra = {"caption": [captions[key]]} if captions and key in captions else {}
                lg.log_image(key=key, images=[arr], step=step, **extra)
            elif kind == "tensorboard":
                lg.experiment.add_image(key, arr, global_step=step or 0, dataformats="HWC")


def log_table(loggers: Iterable, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              step: int | None = None) -> None:
    """A table: a W&B Table, a Markdown text in TensorBoard."""
    for lg in loggers:
        kind = _kind(lg)
        if kind == "wandb":
            lg.log_table(key=key, columns=list(columns), data=[list(r) for r in rows], step=step)
        elif kind == "tensorboard":
            text = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n" + "".join(
                "| " + " | ".join(str(c) for c in r) + " |\n" for r in rows)
            lg.experiment.add_text(key, text, global_step=step or 0)


def _as_array(image: np.ndarray | str | Path) -> np.ndarray:
    if isinstance(image, (str, Path)):
        from PIL import Image

        return np.asarray(Image.open(image).convert("RGB"))
    return np.asarray(image, dtype=np.uint8)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Maps in [0, 1] (..., H, W) -> jet colours (..., H, W, 3), float32 0..255."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.clip(values, 0, 1))[..., :3] * 255).astype(np.float32)


def label_colours(mask: np.ndarray) -> np.ndarray:
    """Label map (0..C, 255 ignore) -> VOC palette colours (H, W, 3), float32 0..255."""
    return np.asarray(PALETTE, dtype=np.float32).reshape(-1, 3)[np.asarray(mask, dtype=np.uint8)]


def blend(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return ((1 - alpha) * np.asarray(image, dtype=np.float32) + alpha * colours).astype(np.uint8)


def cam_overlay(image: np.ndarray, cams: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Image | one jet-coloured CAM overlay per map, side by side. image (H, W, 3) uint8, cams (n, H, W) in [0, 1]."""
    panels = [image, *(blend(image, heat_colours(cam), alpha) for cam in np.asarray(cams, dtype=np.float32))]
    return np.concatenate(panels, axis=1)


def mask_overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Image | a label map (0..C, 255 ignore) in the VOC colours blended over it."""
    return np.concatenate([image, blend(image, label_colours(mask), alpha)], axis=1)


def cam_overlays(dataset, cam_dir: str | Path, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """`overlay/<id>` -> overlay of the CAMs of the present classes for a few images of a split."""
    from wsss.artifacts import ArtifactDir

    cams = ArtifactDir(cam_dir, ".npz")
    out = {}
    for image_id in ids:
        if not cams.exists(image_id):
            continue
        z = cams.read_npz(image_id)
        image = dataset.load_image(image_id)
        maps = z["cams"].astype(np.float32)
        if maps.shape[1:] != image.shape[:2]:
            continue  # CAMs at another size than the image: not drawn
        out[f"overlay/{image_id}"] = cam_overlay(image, maps)
    return out


def iou_rows(metrics: dict) -> dict[str, list[list]]:
    """Per-class IoU tables from evaluate metrics: `<prefix>/iou` -> rows [class, IoU]."""
    return {key[: -len("/iou")]: [[c, float(v)] for c, v in value.items()]
            for key, value in metrics.items() if key.endswith("/iou") and isinstance(value, dict)}


def log_evaluation(loggers: Sequence, metrics: dict, run_dir: str | Path, artifact: str, dataset=None,
                   artifact_dir: str | Path | None = None, num_overlays: int = 4, step: int | None = None) -> None:
    """Everything an evaluate task produced: scalars, the threshold curve <run_dir>/<artifact>_miou_curve.png,
    one IoU-per-class table per evaluated split, and CAM overlays of the first images of the split (also as
    PNGs in <run_dir>/overlays/<artifact>/<split>/, with any logger or none)."""
    overlays = {}
    if dataset is not None and artifact_dir is not None and num_overlays > 0:
        overlays = cam_overlays(dataset, artifact_dir, list(dataset.ids[:num_overlays]))
        write_overlays(Path(run_dir) / "overlays" / artifact / Path(artifact_dir).name, overlays)
    loggers = [lg for lg in loggers if lg is not None]
    if not loggers:
        return
    log_scalars(loggers, metrics, step)
    curve = Path(run_dir) / f"{artifact}_miou_curve.png"
    if curve.is_file():
        log_images(loggers, {f"{artifact}/miou_curve": curve}, step)
    for prefix, rows in iou_rows(metrics).items():
        log_table(loggers, f"{prefix}/iou_per_class", ["class", "IoU"], rows, step)
    log_images(loggers, {f"{artifact}/{k}": v for k, v in overlays.items()}, step)


def write_overlays(folder: Path, overlays: dict[str, np.ndarray]) -> None:
    """The overlays as PNGs in the run folder, whatever the logger (the CSV logger keeps no image)."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, image in overlays.items():
        Image.fromarray(image).save(folder / f"{key.rsplit('/', 1)[-1]}.png")


def finish_wandb(teardown: bool = False) -> None:
    """Close the process's W&B run (Lightning leaves it open); a no-op without wandb.

    `teardown` also stops wandb's service process, which is when an offline run file is complete on disk
    (finish() returns before the service has flushed it)."""
    wandb = sys.modules.get("wandb")
    if wandb is None:
        return
    if getattr(wandb, "run", None) is not None:
        wandb.finish()
    if teardown:
        wandb.teardown()


# -- reading an offline run back ---------------------------------------------------------------------------
_BLOCK = 32768
_HEADER = 7  # ":W&B" + magic (2 bytes) + version


def _records(path: Path) -> list[bytes]:
    """The records of a .wandb file (a LevelDB-style log: 32 KiB blocks, 7-byte record headers)."""
    data = path.read_bytes()
    if not data.startswith(b":W&B"):
        raise ValueError(f"{path}: not a W&B run file (no ':W&B' header)")
    records, pending, pos = [], b"", _HEADER
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            break
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            records.append(pending + chunk)
    return records


def offline_history(run_folder: str | Path) -> dict[str, Any]:
    """What an offline W&B run recorded: {"history": [rows], "config": {...}, "name", "group", "job_type", "tags"}.

    `run_folder` is a `wandb/offline-run-*` folder. Reads the run file with wandb's protobuf schema."""
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_folder).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_folder}: no run-*.wandb file (is this a wandb/offline-run-* folder?)")
    out: dict[str, Any] = {"history": [], "config": {}, "name": None, "group": None, "job_type": None, "tags": []}
    for data in _records(files[0]):
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            out["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                                   for i in rec.history.item})
        elif kind == "run":
            out["group"], out["tags"] = rec.run.run_group, list(rec.run.tags)
            out["name"], out["job_type"] = rec.run.display_name, rec.run.job_type
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
    return out
