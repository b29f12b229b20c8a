"""`python run.py <any command or pipeline> +fetch_weights=true`: the ImageNet weights of every backbone the
command's runs load, fetched into the Hugging Face cache (on a login node), and nothing else run."""
from __future__ import annotations

from pathlib import Path

from wsss.weights import fetch, hub_cache


def pretrained_backbones(plains: list[dict]) -> list[str]:
    """The backbones of resolved run configurations that load ImageNet weights through timm."""
    names = []
    for plain in plains:
        b = plain.get("backbone") or {}
        if b.get("pretrained") and not b.get("weights_path"):
            names.append(str(b["name"]))
    return list(dict.fromkeys(names))


def command_configs(cfg) -> list[dict]:
    """The resolved configuration of every run this command starts: its pipeline's steps, or itself."""
    from omegaconf import OmegaConf

    if not cfg.get("pipeline"):
        return [OmegaConf.to_container(cfg, resolve=True)]
    from hydra.core.hydra_config import HydraConfig

    from wsss import pipeline  # the steps of a pipeline command

    hc = HydraConfig.get()
    general, stage_keys = pipeline.split_overrides([o for o in hc.overrides.task if not is_fetch_override(o)])
    context = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("dataset", "backbone")}
    steps = pipeline.plan(OmegaConf.to_container(cfg.pipeline, resolve=False), general, stage_keys,
                          pipeline.effective_run_name(cfg), pipeline.StepComposer(hc.job.config_name or "config"),
                          experiment=hc.runtime.choices.get("experiment"), context=context)
    return [s.plain for s in steps]


def is_fetch_override(text: str) -> bool:
    return text.lstrip("+~").split("=")[0] == "fetch_weights"


def fetch_for_config(cfg) -> dict[str, Path]:
    """`python run.py ... +fetch_weights=true`: fetch what the command needs, run nothing else."""
    names = pretrained_backbones(command_configs(cfg))
    if not names:
        print("no backbone of this command loads pretrained weights (backbone.pretrained=false or "
              "backbone.weights_path set): nothing to fetch", flush=True)
        return {}
    print(f"cache: {hub_cache()}", flush=True)
    return fetch(names)
