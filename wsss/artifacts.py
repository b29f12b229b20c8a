"""Per-image artifact folders: atomic writes, resume, and a manifest written last.

Every arrow between stages is one of these folders. A file is written to a temporary name in the
same folder and renamed into place, so a killed job never leaves a partial file under a final
name; `missing(ids)` tells a resumed job what is left to do. The manifest (who produced the
folder, from which config and checkpoint, for which data set and split, how many files) is
written only when the folder is complete.

Identity. A manifest names its producer (`producer`: the checkpoint's content hash, a hash of the settings
that change the output, and the identity of every input folder it read), and lists the image ids it
covers. A writer that finds files of another producer removes them before writing (`begin`), so a
resumed predict never keeps files of older weights; the pipeline asks `stale_reason` whether a finished
folder still matches its checkpoint and inputs.

Splits. A split is a list of ids: a consumer asking for split S of an artifact kind gets `<kind>/S/`, or
any finished sibling folder whose manifest covers every id of S (VOC's `train` is read from the
`train_aug` predictions), see `open_split`. When none does, the error names the producing stage and the
command that writes the split.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PENDING = ".producer.json"   # the producer of a folder being written (before its manifest exists)


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


class DamagedArtifact(ValueError):
    """An artifact file that cannot be read (truncated or otherwise damaged)."""


def rewrite_command(folder: Path) -> str:
    """How to rewrite a damaged file of `folder`: the producing run's command (its resumed predict does)."""
    run_dir = run_folder_of(folder)
    if run_dir is None:
        return f"delete it and run again the command that wrote {folder}"
    info = json.loads((run_dir / "run.json").read_text())
    return ("delete it and run again: " + " ".join(["python run.py", *(info.get("overrides") or [])]) +
            " (the run resumes: only what is missing is written)")


def damaged_message(path: Path, image_id: str, error: BaseException) -> str:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    return (f"{path}: the artifact of image {image_id!r} is damaged ({type(error).__name__}: {first}); "
            f"{rewrite_command(path.parent)}")


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        way_out = rewrite_command(Path(path).parent)
        raise ValueError(f"{path}: the manifest is damaged ({e}); {way_out}") from e
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: the manifest holds a {type(manifest).__name__}, not an object; "
                         f"{rewrite_command(Path(path).parent)}")
    return manifest


ENDINGS = {".npz": (22, b"PK\x05\x06"), ".png": (12, b"\x00\x00\x00\x00IEND")}  # end of a whole file


def whole_file(path: Path, recorded_size: int | None = None) -> bool:
    try:
        size = path.stat().st_size
        if recorded_size is not None and size != recorded_size:
            return False
        back, ending = ENDINGS.get(path.suffix, (0, b""))
        if not ending:
            return size > 0
        if size < back:
            return False
        with open(path, "rb") as f:
            f.seek(size - back)
            return f.read(len(ending)) == ending
    except OSError:
        return False


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
        """The ids still to write: no file, or a damaged one (a resumed writer then rewrites it)."""
        ids = list(ids)
        absent = {i for i in ids if not self.exists(i)}
        damaged = self.damaged([i for i in ids if i not in absent])
        if damaged:
            log.warning("%s: %d damaged files will be rewritten: %s", self.root, len(damaged),
                        ", ".join(self.path(i).name for i in damaged[:5]))
        todo = absent | set(damaged)
        return [i for i in ids if i in todo]

    def damaged(self, ids: Iterable[str]) -> list[str]:
        """Ids whose file is not whole: another size than the manifest records, or a cut-off end (an .npz
        without its zip directory, a .png without its IEND chunk). Reads a few bytes per file."""
        try:
            sizes = (self.manifest() or {}).get("sizes") or {}
        except ValueError:
            sizes = {}
        return [i for i in ids if not whole_file(self.path(i), sizes.get(i))]

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
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as e:
            raise DamagedArtifact(damaged_message(p, image_id, e)) from e

    def read_png(self, image_id: str) -> np.ndarray:
        p = self.path(image_id)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: artifact missing for image {image_id!r}")
        try:
            with Image.open(p) as img:
                return np.asarray(img)
        except Exception as e:
            raise DamagedArtifact(damaged_message(p, image_id, e)) from e

    # manifest
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def manifest(self) -> dict | None:
        if not self.manifest_path.is_file():
            return None
        return read_manifest(self.manifest_path)

    def write_manifest(self, ids: list[str] | None = None, **info: Any) -> dict:
        """The manifest, written last; `ids` = the images the folder covers (a consumer may read any
        split whose ids they include). The producer recorded by `begin` goes into it."""
        info = dict(info)
        files = list(self.root.glob(f"*{self.suffix}"))
        info["count"] = len(files)
        # what a resumed writer checks its files against
        info["sizes"] = {p.name[: -len(self.suffix)]: p.stat().st_size for p in sorted(files)}
        info["suffix"] = self.suffix
        if ids is not None:
            info["ids"] = sorted(ids)
        pending = self.root / PENDING
        if "producer" not in info and pending.is_file():
            info["producer"] = json.loads(pending.read_text())
        atomic_write_json(self.manifest_path, info)
        return info

    def invalidate(self) -> None:
        self.manifest_path.unlink(missing_ok=True)

    def recorded_producer(self) -> dict | None:
        """Who wrote the files here: the manifest's producer, or that of an unfinished write."""
        m = self.manifest()
        if m is not None:
            return m.get("producer")
        pending = self.root / PENDING
        return json.loads(pending.read_text()) if pending.is_file() else None

    def other_type_files(self) -> list[Path]:
        """Artifact files here of another suffix than this folder's."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.suffix in ENDINGS and p.suffix != self.suffix)

    def begin(self, producer: dict) -> bool:
        """Prepare to write files of `producer`: files of another (or an unrecorded) producer are removed.

        Call on one process only, before the writers list what is missing. Returns True when it removed."""
        old = self.recorded_producer()
        has_files = self.root.is_dir() and any(self.root.glob(f"*{self.suffix}"))
        other_type = self.other_type_files()
        stale = (has_files and old != producer) or bool(other_type)
        if other_type:  # written when the stage stored another file type (C²AM-H saliency: .png, now .npz)
            log.warning("%s holds %d files of another type (%s, not %s); removing them", self.root,
                        len(other_type), other_type[0].suffix, self.suffix)
            self.remove()
        elif stale:
            log.warning("%s holds files of another producer (%s); rewriting them for %s", self.root,
                        describe_change(old, producer), producer_summary(producer))
            self.remove()
        elif old != producer:
            self.invalidate()
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.root / PENDING, producer)  # the manifest takes it over when the folder is done
        return stale

    def prepare(self, producer: dict, ids: Iterable[str]) -> list[str]:
        """Single-process writers (derived artifacts): `begin`, then the ids still to write."""
        self.clean_temporaries()
        self.begin(producer)
        missing = self.missing(ids)
        if missing:
            self.invalidate()
        return missing

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


# -- identity of what produced a folder -----------------------------------------------------------------
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    """sha256 (16 hex digits) of a file's content, cached per (path, size, mtime) within the process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()[:16]
    return _DIGESTS[key]


def checkpoint_identity(path: str | Path | None) -> dict | str:
    """What weights a predict used: `{path, sha256}` of the checkpoint file, or "untrained"."""
    if not path:
        return "untrained"
    return {"path": str(path), "sha256": file_digest(path)}


def folder_identity(kind_root: str | Path) -> str | None:
    """A digest of the producers of every finished split folder under `<kind_root>/` (None: nothing there).

    A consumer records it for each input folder, so that new producers of its inputs make it stale."""
    records = []
    for manifest in sorted(Path(kind_root).glob(f"*/{MANIFEST}")):
        m = read_manifest(manifest)
        records.append([manifest.parent.name, m.get("producer"), m.get("count")])
    return config_hash(records) if records else None


def producer_summary(producer: dict | None) -> str:
    if not producer:
        return "no recorded producer"
    ckpt = producer.get("checkpoint")
    weights = f"{ckpt['path']} (sha256 {ckpt['sha256']})" if isinstance(ckpt, dict) else str(ckpt)
    return f"weights {weights}, settings {producer.get('settings')}"


def describe_change(old: dict | None, new: dict) -> str:
    if not old:
        return "no recorded producer"
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "changed: " + ", ".join(changed)


def stale_reason(folder: ArtifactDir) -> str | None:
    """Why a finished folder no longer matches what it was made from (its checkpoint file or an input
    folder changed since), or None. Settings are the run's config, compared by whoever composed it."""
    producer = (folder.manifest() or {}).get("producer") or {}
    ckpt = producer.get("checkpoint")
    if isinstance(ckpt, dict):
        path = Path(ckpt["path"])
        if not path.is_file():
            return f"{folder.root} was made by {path}, which no longer exists"
        if file_digest(path) != ckpt.get("sha256"):
            return f"{folder.root} was made by an older {path} (the checkpoint changed since)"
    for path, digest in (producer.get("inputs") or {}).items():
        if folder_identity(path) != digest:
            return f"{folder.root} was made from {path}, which changed since"
    return None


# -- splits: a split is a list of ids --------------------------------------------------------------------
def covering_folder(kind_root: str | Path, split: str, ids: list[str], suffix: str) -> ArtifactDir | None:
    """The finished folder holding every id of `split`: `<kind_root>/<split>/` first, then any sibling
    whose manifest lists all of `ids` (e.g. `train_aug` for `train`); None when there is none."""
    kind_root = Path(kind_root)
    own = ArtifactDir(kind_root / split, suffix)
    m = own.manifest()
    if m is not None and ("ids" not in m or set(ids) <= set(m["ids"])):
        return own
    wanted = set(ids)
    for manifest in sorted(kind_root.glob(f"*/{MANIFEST}")):
        other = read_manifest(manifest)
        if wanted <= set(other.get("ids") or ()):
            return ArtifactDir(manifest.parent, suffix)
    return None


def open_split(kind_root: str | Path, split: str, ids: list[str], suffix: str, dataset: str | None = None,
               kind: str | None = None) -> ArtifactDir:
    """The finished artifacts of `split` under `kind_root`, checked (data set, kind); else an error that names
    the stage that writes them and the command to run."""
    if not kind_root:
        raise ValueError(f"no input folder given for the {suffix} artifacts of split {split!r}")
    folder = covering_folder(kind_root, split, ids, suffix)
    if folder is None:
        raise FileNotFoundError(
            f"{Path(kind_root) / split}: no finished artifacts of split {split!r} ({len(ids)} images); "
            f"no {MANIFEST} under {kind_root} lists them. {producer_hint(kind_root, split, suffix, dataset)}")
    m = folder.manifest() or {}
    for key, want in (("dataset", dataset), ("kind", kind)):
        if want is not None and key in m and m[key] != want:
            raise ValueError(f"{folder.root}: artifacts were made for {key}={m[key]!r}, but this stage expects "
                             f"{key}={want!r}")
    return folder


def run_folder_of(path: str | Path) -> Path | None:
    """The run folder (holding run.json) that `path` lies in, if any."""
    for p in [Path(path), *Path(path).parents]:
        if (p / "run.json").is_file():
            return p
    return None


def producer_hint(kind_root: str | Path, split: str, suffix: str = "", dataset: str | None = None) -> str:
    """'They are written by stage X: python run.py ...', read from the producing run's run.json."""
    run_dir = run_folder_of(kind_root)
    if run_dir is None:
        return run_folder_hint(Path(kind_root), split, suffix, dataset)
    info = json.loads((run_dir / "run.json").read_text())
    overrides = [o for o in info.get("overrides") or [] if not o.split("=")[0].lstrip("+~") in
                 ("tasks", "dataset.predict_splits")]
    splits = list(dict.fromkeys([*(info.get("predict_splits") or []), split]))
    command = " ".join(["python run.py", *overrides, f"dataset.predict_splits=[{','.join(splits)}]"])
    if split in (info.get("predict_splits") or []):
        folder = Path(kind_root) / split
        return (f"stage={info.get('stage')} (run folder {run_dir}) predicts {split!r}, but no finished "
                f"folder there lists every id of it: {folder} is unfinished, or was written for other ids (a "
                f"changed split list or data set; see its {MANIFEST}). Delete {folder} and run {command}")
    return (f"They are written by stage={info.get('stage')} (run folder {run_dir}), whose predict splits "
            f"{info.get('predict_splits')} do not cover {split!r}; this writes them (training resumes, "
            f"nothing is retrained): {command}")


#: which stages write artifacts of a suffix, for a folder whose path names no run
WRITERS = {".npz": ("CAMs", "a CAM stage (stage=classifier, puzzle, occse, poc or pnoc; the affinity stage's rw "
                    "maps and stage=ccam's float saliency too)", "classifier"),
           ".png": ("maps", "stage=ccam (.npz saliency, .png pseudo saliency) or stage=saliency (saliency), "
                    "stage=affinity (pseudo masks)", "ccam")}


def run_folder_hint(kind_root: Path, split: str, suffix: str = "", dataset: str | None = None) -> str:
    """The hint for a folder no run has written: the stage its path names (<runs>/<stage>/<dataset>/<backbone>/
    <run_name>/<kind>), and its command."""
    stages = Path(__file__).resolve().parents[1] / "conf" / "stage"
    parts = kind_root.parts
    for i in range(len(parts) - 4):
        if (stages / f"{parts[i]}.yaml").is_file() and i + 4 == len(parts) - 1:
            stage, dataset, backbone, run_name = parts[i:i + 4]
            return (f"Nothing has run in {Path(*parts[:i + 4])}; it is the run folder of stage={stage}, written by: "
                    f"python run.py stage={stage} dataset={dataset} backbone={backbone} run_name={run_name} "
                    f"paths.runs_dir={Path(*parts[:i])} (with the same experiment=... as this run; {split!r} must "
                    "be among its dataset.predict_splits)")
    what, writers, example = WRITERS.get(suffix, ("artifacts", "the stage that makes them", "classifier"))
    return (f"No run has written {kind_root} (no run.json above it). These {what} are written by {writers}, "
            f"e.g. python run.py stage={example} dataset={dataset or '<dataset>'} 'dataset.predict_splits=[{split}]' "
            f"(into <runs>/<stage>/<dataset>/<backbone>/<run_name>/); or point this stage's input at its artifact "
            "folder.")
