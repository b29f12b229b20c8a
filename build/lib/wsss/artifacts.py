"""Per-image artifact folders: atomic writes, resume, and a manifest written last.

Every arrow between stages is one of these folders. A file is written to a temporary name in the
same folder and renamed into place, so a killed job never leaves a partial file under a final
name; `missing(ids)` tells a resumed job what is left to do. The manifest (who produced the
folder, from which config and checkpoint, for which data set and split, how many files) is
written only when the folder is complete.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

MANIFEST = "manifest.json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; artifacts get the mode a plain open() would give, so that a group sharing
# a runs/ folder can read them
FILE_MODE = 0o666 & ~_umask()


def temporary_sibling(path: Path) -> tuple[int, str]:
    """(fd, name) of a new hidden file next to `path`, with the usual file mode, to be renamed onto it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    return fd, tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_sibling(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


# Top-level config keys that say how a run runs, not what it computes: a run may resume with other values,
# and the pipeline compares finished runs without them (`tasks` aside, which says what a run produced).
RESUMABLE_KEYS = ("trainer", "logger", "paths", "num_workers", "tasks", "ckpt_path", "on_nonfinite_loss",
                  "checkpoint_every_n_steps")


def config_hash(cfg: Any) -> str:
    """Stable short hash of a plain (resolved) config."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def voc_palette(n: int = 256) -> list[int]:
    """The bit-interleaved Pascal VOC colour map, 256 RGB triplets flattened."""
    pal = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


PALETTE = voc_palette()


def encode_png(array: np.ndarray, palette: bool = False) -> bytes:
    img = Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L" if not palette else "P")
    if palette:
        img.putpalette(PALETTE)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class ArtifactDir:
    """A folder of per-image files `<id><suffix>` plus `manifest.json`."""

    def __init__(self, root: str | Path, suffix: str):
        self.root = Path(root)
        self.suffix = suffix
        self.written: list[str] = []  # ids written by this process, for the manifest's per-rank counts

    def path(self, image_id: str) -> Path:
        return self.root / f"{image_id}{self.suffix}"

    def exists(self, image_id: str) -> bool:
        return self.path(image_id).is_file()

    def missing(self, ids: Iterable[str]) -> list[str]:
        return [i for i in ids if not self.exists(i)]

    def clean_temporaries(self) -> int:
        """Remove `.tmp` files a killed writer left behind (they never have final names)."""
        n = 0
        if self.root.is_dir():
            for p in self.root.glob(".*.tmp"):
                p.unlink(missing_ok=True)
                n += 1
        return n

    # writers
    def write_npz(self, image_id: str, **arrays: np.ndarray) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.path(image_id), buf.getvalue())
        self.written.append(image_id)

    def write_png(self, image_id: str, array: np.ndarray, palette: bool = False) -> None:
        atomic_write_bytes(self.path(image_id), encode_png(array, palette))
        self.written.append(image_id)

    # readers
    def read_npz(self, image_id: str) -> dict[str, np.ndarray]:
        p = self.path(image_id)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: artifact missing for image {image_id!r}")
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def read_png(self, image_id: str) -> np.ndarray:
        p = self.path(image_id)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: artifact missing for image {image_id!r}")
        return np.asarray(Image.open(p))

    # manifest
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def manifest(self) -> dict | None:
        if not self.manifest_path.is_file():
            return None
        return json.loads(self.manifest_path.read_text())

    def write_manifest(self, **info: Any) -> dict:
        info = dict(info)
        info["count"] = sum(1 for _ in self.root.glob(f"*{self.suffix}"))
        info["suffix"] = self.suffix
        atomic_write_json(self.manifest_path, info)
        return info

    def invalidate(self) -> None:
        self.manifest_path.unlink(missing_ok=True)

    def check(self, expect: dict[str, Any], producer_hint: str = "") -> dict:
        """Fail clearly when the folder is incomplete or made for other data than the consumer's."""
        m = self.manifest()
        hint = f" (run {producer_hint} first)" if producer_hint else ""
        if m is None:
            raise FileNotFoundError(f"{self.root}: no {MANIFEST}; the artifact folder is missing or incomplete{hint}")
        for key, want in expect.items():
            if key in m and m[key] != want:
                raise ValueError(f"{self.root}: artifacts were made for {key}={m[key]!r}, but this stage expects "
                                 f"{key}={want!r}")
        return m

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
