"""Pretrained weights without internet (wsss/weights.py): cache first, a one-paragraph error, fetching."""
import os
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.helpers import ROOT
from wsss import weights
from wsss.models.backbone import Backbone

REPO = "timm/resnet18.a1_in1k"  # resnet18's default pretrained tag in timm


def write_hub_file(cache, repo: str, filename: str, state: dict) -> str:
    """A file in the Hugging Face hub cache layout, as hf_hub_download leaves it (blob + snapshot + ref)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    blob = folder / "blobs" / "f00d"
    blob.parent.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(blob))
    os.symlink(blob, snapshot / filename)
    return str(snapshot / filename)


def imagenet_like_state(seed: int = 3) -> dict:
    torch.manual_seed(seed)
    return timm.create_model("resnet18", pretrained=False).state_dict()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty hub cache in HF_HUB_CACHE, HF_HUB_OFFLINE=1, and no way to reach any server."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*a, **k):
        raise AssertionError("the network was asked")

    import huggingface_hub
    import timm.models._hub as timm_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(timm_hub, "hf_hub_download", no_network)
    return cache


@pytest.mark.parametrize("offline", ["1", ""])
def test_cached_weights_load_without_the_network(hub, monkeypatch, offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(weights.socket, "create_connection", lambda *a, **k: pytest.fail("probed the network"))
    state = imagenet_like_state()
    write_hub_file(hub, REPO, "model.safetensors", state)
    b = Backbone("resnet18", pretrained=True, output_stride=None)
    got = b.body.state_dict()
    assert torch.equal(got["conv1.weight"], state["conv1.weight"])
    assert torch.equal(got["layer4.1.bn2.running_var"], state["layer4.1.bn2.running_var"])
    # and not by chance: a model built without them differs
    assert not torch.equal(Backbone("resnet18", pretrained=False).body.state_dict()["conv1.weight"],
                           state["conv1.weight"])


def test_the_pickle_file_is_found_when_there_is_no_safetensors(hub):
    state = imagenet_like_state(5)
    path = write_hub_file(hub, REPO, "pytorch_model.bin", {})
    os.remove(path)
    torch.save(state, path)
    assert weights.cached_file(weights.source_of("resnet18")) == __import__("pathlib").Path(path)
    assert torch.equal(Backbone("resnet18").body.state_dict()["conv1.weight"], state["conv1.weight"])


def check_paragraph(message: str, cache, name="resnest269", tid="resnest269e"):
    for part in (f"backbone.name={name}", f"timm model {tid!r}", str(cache), "backbone.weights_path=",
                 f"python -m wsss.weights {name}", "+fetch_weights=true", "HF_HUB_CACHE", "HF_HUB_OFFLINE=1",
                 "backbone.pretrained=false"):
        assert part in message, part
    assert "\n" not in message


def test_offline_with_an_empty_cache_is_one_clear_paragraph(hub):
    with pytest.raises(weights.WeightsUnavailable) as e:
        Backbone("resnest269", pretrained=True)
    check_paragraph(str(e.value), hub)
    assert "HF_HUB_OFFLINE is set" in str(e.value)


def test_an_unreachable_hub_fails_at_once_without_retries(hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)

    def refused(address, timeout=None):
        assert address == ("huggingface.co", 443)
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(weights.socket, "create_connection", refused)
    with pytest.raises(weights.WeightsUnavailable) as e:
        Backbone("resnest269", pretrained=True)
    check_paragraph(str(e.value), hub)
    assert "huggingface.co:443 cannot be reached" in str(e.value)


def test_a_failed_download_becomes_the_same_paragraph(hub, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights, "unreachable", lambda src: None)  # the probe passes, the download breaks

    def broken(*a, **k):
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub")

    import timm.models._hub as timm_hub

    monkeypatch.setattr(timm_hub, "hf_hub_download", broken)
    with pytest.raises(weights.WeightsUnavailable) as e:
        Backbone("resnet18", pretrained=True, output_stride=None)
    check_paragraph(str(e.value), hub, "resnet18", "resnet18")
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_weights_path_wins_and_never_looks_at_the_cache(hub, tmp_path):
    state = imagenet_like_state(7)
    path = tmp_path / "rn18.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    b = Backbone("resnet18", pretrained=True, weights_path=str(path), output_stride=None)
    assert torch.equal(b.body.state_dict()["conv1.weight"], state["conv1.weight"])


def test_fetch_fills_the_cache_that_the_backbone_reads_and_skips_cached_files(hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    calls = []

    def fake_download(repo, filename, cache_dir=None, **k):  # what huggingface_hub writes, without a server
        calls.append((repo, filename, cache_dir))
        return write_hub_file(hub, repo, filename, imagenet_like_state())

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    got = weights.fetch(["resnet18", "resnet18"])
    assert calls == [(REPO, "model.safetensors", str(hub))]
    assert weights.fetch(["resnet18"]) == got and len(calls) == 1
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert torch.equal(Backbone("resnet18", output_stride=None).body.state_dict()["conv1.weight"],
                       imagenet_like_state()["conv1.weight"])


def test_cli_check_and_offline_fetch(hub, capsys):
    assert weights.main(["--check", "resnet18"]) == 1
    assert weights.main(["resnet18"]) == 1
    assert "HF_HUB_OFFLINE is set: unset it to fetch" in capsys.readouterr().err
    write_hub_file(hub, REPO, "model.safetensors", imagenet_like_state())
    assert weights.main(["--check", "resnet18"]) == 0


def test_a_backbone_timm_has_no_weights_for_says_so():
    with pytest.raises(weights.WeightsUnavailable, match="backbone.pretrained=false"):
        weights.source_of("efficientnet_b6")


def run_py(env, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_headline_command_offline_ends_in_the_paragraph_not_a_hub_traceback(tmp_path):
    out = run_py({"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}, "stage=pnoc", "backbone=resnest269",
                 f"paths.runs_dir={tmp_path}/runs", "dataset.scan=false")
    assert out.returncode != 0
    check_paragraph(out.stderr.strip().splitlines()[-3 if "HYDRA_FULL_ERROR" in out.stderr else -1], tmp_path)
    assert "huggingface_hub" not in out.stderr and "LocalEntryNotFoundError" not in out.stderr


@pytest.mark.slow
def test_fetch_weights_of_a_pipeline_composes_every_step(tmp_path):
    """`pipeline=... +fetch_weights=true` asks for the backbones of all steps (resnet18 in experiment=synthetic)
    and runs nothing; offline with the weights cached it only reports them."""
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    args = ["pipeline=wsss", "experiment=synthetic", "backbone.pretrained=true", f"paths.runs_dir={tmp_path}/runs",
            "+fetch_weights=true"]
    out = run_py(env, *args)
    assert out.returncode != 0 and "backbone.name=resnet18" in out.stderr and "unset it to fetch" in out.stderr
    write_hub_file(tmp_path / "hub", REPO, "model.safetensors", imagenet_like_state())
    out = run_py(env, *args)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("resnet18 (resnet18): already in the cache") == 1, out.stdout
    assert not (tmp_path / "runs" / "classifier").exists()
