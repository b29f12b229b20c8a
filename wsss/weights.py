"""ImageNet weights of the timm backbones on clusters whose compute nodes have no internet.

timm takes a backbone's pretrained weights from the Hugging Face hub (`timm/<model>.<tag>`) and keeps them in
the hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. Here:
- a file already in that cache is loaded from it directly, without asking the network (no retries on an offline
  node, and `HF_HUB_OFFLINE=1` is honoured);
- a file missing from the cache where it cannot be downloaded fails at once with one paragraph that names the
  weights, the cache and the ways out (`WeightsUnavailable`), instead of huggingface_hub's retry traceback;
- `python -m wsss.weights resnest269 ...`, or `python run.py <any command or pipeline> +fetch_weights=true`, run
  on a machine with internet (a login node), downloads every backbone the command needs into that cache.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from wsss.user_errors import UserError

log = logging.getLogger(__name__)

# timm tries the safetensors file first, then the pickle of the same weights (timm/models/_hub.py).
HF_FILES = ("model.safetensors", "pytorch_model.bin")
TRUE = ("1", "on", "yes", "true")


class WeightsUnavailable(UserError, RuntimeError):
    """Pretrained weights that are neither cached nor downloadable; the message says what to run."""


@dataclass(frozen=True)
class WeightsSource:
    backbone: str            # the name in conf/backbone (or the timm id given there)
    timm_id: str
    hf_repo: str | None      # e.g. timm/resnest269e.in1k
    hf_files: tuple[str, ...]
    url: str | None          # timm's fallback source for models without a hub repository

    def where(self) -> str:
        if self.hf_repo:
            return f"{self.hf_repo} on the Hugging Face hub"
        return self.url or "nowhere"


# -- where things are ------------------------------------------------------------------------------------
def hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def torch_hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE


def source_of(backbone: str) -> WeightsSource:
    from timm.models import get_pretrained_cfg

    from wsss.timm_names import timm_name

    tid = timm_name(backbone)
    cfg = get_pretrained_cfg(tid)
    repo = getattr(cfg, "hf_hub_id", None) if cfg else None
    url = (getattr(cfg, "url", None) or None) if cfg else None
    if not repo and not url:
        raise WeightsUnavailable(
            f"backbone.name={backbone}: timm has no pretrained weights for {tid!r} (its default tag is "
            f"{getattr(cfg, 'tag', None)!r}). Train it from scratch with backbone.pretrained=false, or give a "
            f"state dict with backbone.weights_path=/path/to/weights.pth.")
    files = (cfg.hf_hub_filename,) if repo and getattr(cfg, "hf_hub_filename", None) else HF_FILES
    return WeightsSource(backbone, tid, repo, files, url)


def cached_file(src: WeightsSource) -> Path | None:
    """The local file timm would load for `src`, or None when it is not in the cache."""
    if src.hf_repo:
        from huggingface_hub import try_to_load_from_cache

        for name in src.hf_files:
            found = try_to_load_from_cache(src.hf_repo, name, cache_dir=str(hub_cache()))
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
        return None
    path = torch_hub_checkpoints() / Path(urlparse(src.url).path).name
    return path if path.is_file() else None


def cache_of(src: WeightsSource) -> Path:
    return hub_cache() if src.hf_repo else torch_hub_checkpoints()


def unreachable(src: WeightsSource, timeout: float = 5.0) -> str | None:
    """Why the weights' server cannot be reached (a quick TCP probe), or None. Skipped behind a proxy."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    if src.hf_repo:
        from huggingface_hub import constants

        url = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    else:
        url = src.url
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"{host}:{port} cannot be reached ({e})"
    return None


def unavailable_message(src: WeightsSource, reason: str) -> str:
    files = " or ".join(src.hf_files) if src.hf_repo else Path(urlparse(src.url).path).name
    return (
        f"backbone.name={src.backbone} needs the pretrained weights of timm model {src.timm_id!r} ({files} of "
        f"{src.where()}), which are not in the cache {cache_of(src)} and cannot be downloaded here: {reason}. "
        f"Compute nodes of most clusters have no internet. Ways out: (1) on a machine with internet (a login "
        f"node) run `python -m wsss.weights {src.backbone}`, or add `+fetch_weights=true` to your run.py command "
        f"(a pipeline= command fetches the backbones of all its steps), with HF_HOME or HF_HUB_CACHE set to a "
        f"folder the compute nodes see, and set the same variable in the job (slurm/site.sh); HF_HUB_OFFLINE=1 "
        f"there makes the job use the cache without trying the network; (2) give a local state dict: "
        f"backbone.weights_path=/path/to/{src.timm_id}.pth; (3) train from scratch: backbone.pretrained=false.")


# -- at run time -----------------------------------------------------------------------------------------
def local_weights(backbone: str) -> Path | None:
    """For Backbone(pretrained=True): the cached file to load, None to let timm download it (online).

    Raises WeightsUnavailable when the file is not cached and cannot be downloaded (HF_HUB_OFFLINE, or the
    server cannot be reached), before timm spends a minute on retries."""
    src = source_of(backbone)
    path = cached_file(src)
    if path is not None:
        log.info("pretrained weights of %s: %s", src.timm_id, path)
        return path
    reason = "HF_HUB_OFFLINE is set" if offline() and src.hf_repo else unreachable(src)
    if reason:
        raise WeightsUnavailable(unavailable_message(src, reason))
    return None


def download_failed(backbone: str, error: BaseException) -> WeightsUnavailable:
    """The error to raise when timm's own download failed (network gone half-way, a proxy refusing...)."""
    return WeightsUnavailable(unavailable_message(source_of(backbone), f"{type(error).__name__}: {error}"))


def is_download_error(error: BaseException) -> bool:
    import huggingface_hub.errors as hf_errors

    names = {c.__name__ for c in type(error).__mro__}
    return (isinstance(error, (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled, ConnectionError,
                               TimeoutError, socket.gaierror))
            or bool(names & {"ConnectError", "ConnectTimeout", "URLError", "HTTPError", "HfHubHTTPError"}))


# -- fetching on a login node ----------------------------------------------------------------------------
def fetch(backbones: list[str]) -> dict[str, Path]:
    """Download the weights of every backbone into the cache (skipping cached ones); {backbone: file}."""
    done: dict[str, Path] = {}
    for name in dict.fromkeys(backbones):
        src = source_of(name)
        path = cached_file(src)
        if path is None:
            if offline():
                raise WeightsUnavailable(unavailable_message(src, "HF_HUB_OFFLINE is set: unset it to fetch"))
            path = download(src)
            if cached_file(src) != path:  # what Backbone will look up must be what was written
                raise WeightsUnavailable(f"{name}: downloaded {path}, but the cache lookup in {cache_of(src)} "
                                         "does not find it; check HF_HUB_CACHE / HF_HOME")
            print(f"{name} ({src.timm_id}): fetched {path}", flush=True)
        else:
            print(f"{name} ({src.timm_id}): already in the cache, {path}", flush=True)
        done[name] = path
    return done


def download(src: WeightsSource) -> Path:
    if src.hf_repo:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        for name in src.hf_files:
            try:
                return Path(hf_hub_download(src.hf_repo, name, cache_dir=str(hub_cache())))
            except EntryNotFoundError:
                continue
            except Exception as e:
                if is_download_error(e):
                    raise download_failed(src.backbone, e) from None
                raise
        raise WeightsUnavailable(f"{src.hf_repo} has none of {', '.join(src.hf_files)}")
    import torch

    target = torch_hub_checkpoints() / Path(urlparse(src.url).path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(src.url, str(target), progress=False)
    return target


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m wsss.weights",
        description="Download the ImageNet weights of backbones into the Hugging Face cache ($HF_HUB_CACHE, "
                    "else $HF_HOME/hub, else ~/.cache/huggingface/hub), e.g. on a login node. For all the "
                    "backbones of a recipe or pipeline: python run.py <command> +fetch_weights=true.")
    p.add_argument("backbones", nargs="+", help="conf/backbone names (resnest269, resnet50, ...) or timm ids")
    p.add_argument("--check", action="store_true", help="only say whether each is cached; exit 1 if one is not")
    args = p.parse_args(argv)
    if args.check:
        missing = 0
        for name in args.backbones:
            path = cached_file(source_of(name))
            missing += path is None
            print(f"{name}: {path or 'not in ' + str(cache_of(source_of(name)))}")
        return 1 if missing else 0
    try:
        fetch(args.backbones)
    except WeightsUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
