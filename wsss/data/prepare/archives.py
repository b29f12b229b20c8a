"""Official archives: where they come from, their checksums, and a resumable, atomic extraction.

A preparation step that finished leaves a marker in `<out>/.prepare/`, so a rerun skips it; inside a step,
every file is written to a temporary sibling and renamed (`wsss.artifacts.atomic_write_bytes`), and a file
already on disk with the member's size is kept, so a killed run redoes only the file it was writing.
"""
from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from wsss.artifacts import atomic_write_bytes, atomic_write_json

STATE_DIR = ".prepare"


class PrepareError(RuntimeError):
    """Input a preparation cannot use; the message says which file and what to do."""


@dataclass(frozen=True)
class Archive:
    filename: str
    url: str
    md5: str
    option: str          # the command-line option that takes its path, e.g. --voc

    def missing_message(self, given: Path | None) -> str:
        where = f"{given} does not exist" if given else f"{self.option} was not given"
        return (f"{self.filename} is needed and {where}. Download it from {self.url} (md5 {self.md5}) and "
                f"pass its path with {self.option} <path>.")


def md5_of(path: Path, state: Path | None = None) -> str:
    """The file's md5, remembered in `state` per (path, size, mtime) so a rerun does not read it again."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    known = json.loads(state.read_text()) if state is not None and state.is_file() else {}
    if key not in known:
        h = hashlib.md5()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        known[key] = h.hexdigest()
        if state is not None:
            atomic_write_json(state, known)
    return known[key]


def checked_archive(archive: Archive, given: str | None, expected_md5: str | None, verify: bool,
                    out: Path, skip_option: str = "--no-verify") -> Path:
    """The archive's path once it exists and its md5 is the official one (or `expected_md5`)."""
    path = Path(given).expanduser() if given else None
    if path is None or not path.is_file():
        raise PrepareError(archive.missing_message(path))
    if not verify:
        return path
    expected = (expected_md5 or archive.md5).lower()
    actual = md5_of(path, out / STATE_DIR / "md5.json")
    if actual != expected:
        raise PrepareError(
            f"{path}: md5 {actual} but {archive.filename} has md5 {expected}; the download is incomplete or "
            f"a different file. Download it again from {archive.url}, or, for a copy you trust, skip the "
            f"check with {skip_option} (or expect its digest with {archive.option}-md5 {actual}).")
    return path


def members(path: Path) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """The regular files of a tar (any compression), read as a stream in archive order."""
    try:
        with tarfile.open(path, "r|*") as tar:
            for info in tar:
                if info.isfile():
                    yield info, tar
    except (tarfile.TarError, EOFError, OSError) as e:
        raise PrepareError(f"{path}: cannot read the archive ({type(e).__name__}: {e}); download it "
                           "again") from None


def relative_member(name: str, prefix: str) -> PurePosixPath | None:
    """The member's path below `prefix` (a folder inside the archive), None when it is elsewhere."""
    rel = PurePosixPath(name.lstrip("./"))
    try:
        rel = rel.relative_to(prefix)
    except ValueError:
        return None
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        return None
    return rel


def write_member(tar: tarfile.TarFile, info: tarfile.TarInfo, target: Path) -> bool:
    """Write the member to `target` atomically unless a file of its size is there; True when written."""
    if target.is_file() and target.stat().st_size == info.size:
        return False
    atomic_write_bytes(target, tar.extractfile(info).read())
    return True


def extract(path: Path, prefix: str, out: Path, skip: tuple[str, ...] = ()) -> tuple[int, int]:
    """Every file under `prefix` in the archive, into `out` (the prefix stripped): (written, already there).
    Top-level folders below the prefix named in `skip` are left out."""
    written = kept = 0
    for info, tar in members(path):
        rel = relative_member(info.name, prefix)
        if rel is None or rel.parts[0] in skip:
            continue
        if write_member(tar, info, out / rel):
            written += 1
        else:
            kept += 1
    return written, kept


def done_marker(out: Path, step: str) -> Path:
    return out / STATE_DIR / f"{step}.done"


def is_done(out: Path, step: str, identity: str) -> bool:
    marker = done_marker(out, step)
    return marker.is_file() and marker.read_text().strip() == identity


def mark_done(out: Path, step: str, identity: str) -> None:
    atomic_write_bytes(done_marker(out, step), (identity + "\n").encode())


def archive_identity(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
