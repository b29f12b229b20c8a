"""Every option of every config group composes; typos and unknown options fail with Hydra's message."""
import subprocess
import sys

import pytest
from hydra.utils import get_class, get_method
from omegaconf import OmegaConf

from tests.helpers import ROOT
from wsss.stage_schema import composed_config_problems

CONF = ROOT / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["stage", "dataset", "backbone", "trainer", "logger", "callbacks", "experiment"])
def test_every_option_composes(group, make_cfg, tmp_path):
    assert options(group), f"conf/{group} is empty"
    for option in options(group):
        cfg = make_cfg(f"{group}={option}", tiny=False)
        plain = OmegaConf.to_container(cfg.stage, resolve=False)
        assert plain["name"]
        assert composed_config_problems(cfg) == [], option  # types and keys against conf/stage
        get_class(cfg.stage._target_)  # the stage class imports
        if group == "dataset":
            get_class(cfg.dataset._target_)
        if group in ("logger", "callbacks"):
            for spec in cfg[group].values():
                target = spec["_target_"]
                (get_method if target.startswith("wsss.") else get_class)(target)


def test_tests_never_ask_for_pretrained_weights(make_cfg):
    assert make_cfg().backbone.pretrained is False
    assert make_cfg(tiny=False).backbone.pretrained is True  # real runs load ImageNet weights by default


def run_py(*args, timeout=120):
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_cfg_job_of_the_paper_command_composes():
    out = run_py("stage=classifier", "backbone=resnest269", "trainer=ddp", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    cfg = OmegaConf.create(out.stdout)
    assert cfg.backbone.name == "resnest269" and cfg.trainer.devices == 4 and cfg.trainer.strategy == "ddp"
    assert cfg.trainer.precision == "bf16-mixed"


def test_help_lists_the_groups():
    out = run_py("--help")
    assert out.returncode == 0
    for group in ("stage", "dataset", "backbone", "trainer", "logger", "callbacks", "experiment"):
        assert f"{group}:" in out.stdout


def test_unknown_option_and_key_fail_with_hydra_message():
    out = run_py("stage=nosuchstage", "--cfg", "job")
    assert out.returncode != 0 and "nosuchstage" in out.stderr and "stage" in out.stderr
    out = run_py("stage.learning_rate=0.1", "--cfg", "job")
    assert out.returncode != 0 and "learning_rate" in out.stderr
