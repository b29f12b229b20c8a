"""Determinism, safe loading and the disk check, on two small classifier runs (fit + predict)."""
from collections import namedtuple

import numpy as np
import pytest
import torch

from tests.reliability.common import run_in_process
from wsss.artifacts import ArtifactDir
from wsss.reliability import estimate_artifact_bytes

RUN = ["tasks=[fit,predict]", "stage.max_epochs=1", "dataset.predict_splits=[val]"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, module_tmp):
    data_dir = tmp_path_factory.getbasetemp() / "data-reliability"
    base = module_tmp("det")
    dirs = [base / "a", base / "b"]
    for d in dirs:
        run_in_process(d, data_dir, *RUN)
    return data_dir, dirs


def test_same_seed_gives_identical_cams(two_runs):
    _, (a, b) = two_runs
    names = sorted(p.name for p in (a / "cams" / "val").glob("*.npz"))
    assert len(names) == 4
    for name in names:
        with np.load(a / "cams" / "val" / name, allow_pickle=False) as x, \
                np.load(b / "cams" / "val" / name, allow_pickle=False) as y:
            assert np.array_equal(x["keys"], y["keys"]) and np.array_equal(x["cams"], y["cams"]), name


def plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def test_checkpoints_and_artifacts_load_without_pickle(two_runs):
    _, (a, _) = two_runs
    ckpts = list(a.rglob("*.ckpt"))
    assert ckpts
    for path in ckpts:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert plain(ckpt["hyper_parameters"]), path
        assert any("RNGState" in k for k in ckpt["callbacks"])
    cams = ArtifactDir(a / "cams" / "val", ".npz")
    for image_id in ("val_00016", "val_00019"):
        z = cams.read_npz(image_id)  # np.load(allow_pickle=False) inside
        assert z["cams"].dtype == np.float16
    for path in (a / "cams" / "val").glob("*.npz"):
        with np.load(path, allow_pickle=False) as z:
            assert all(z[k].dtype != object for k in z.files)


def test_disk_estimate_bounds_what_predict_wrote(two_runs):
    from wsss.data.datamodule import WSSSDataModule
    from tests.helpers import compose_config
    from tests.reliability.common import SMALL
    from omegaconf import OmegaConf

    data_dir, (a, _) = two_runs
    cfg = OmegaConf.to_container(compose_config(a, data_dir, SMALL, tiny=False), resolve=True)
    val = WSSSDataModule(cfg["dataset"], 4, (0,) * 3, (1,) * 3).split("val")
    written = sum(p.stat().st_size for p in (a / "cams" / "val").glob("*.npz"))
    estimate = estimate_artifact_bytes(val, val.ids, ".npz")  # from image headers and labels
    assert written <= estimate <= 2.5 * written
    resumed = estimate_artifact_bytes(val, val.ids[:2], ".npz", folder=a / "cams" / "val")  # from written files
    assert resumed == pytest.approx(written / 4 * 2, rel=1e-6)


def test_predict_fails_early_when_the_disk_is_too_small(two_runs, tmp_path, monkeypatch):
    data_dir, _ = two_runs
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr("wsss.reliability.disk.shutil.disk_usage", lambda p: Usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(OSError, match=r"cams/val: writing 4 .npz artifacts needs about .* GiB .* but only 0.00 GiB "
                                      r"are free"):
        run_in_process(tmp_path / "full", data_dir, "tasks=[predict]", "dataset.predict_splits=[val]")
    assert not list((tmp_path / "full").rglob("*.npz"))


def test_outputs_get_the_mode_of_a_plain_open(two_runs, tmp_path):
    """Atomic writes go through mkstemp (0600): checkpoints, artifacts and manifests must still get the
    mode an ordinary file gets under the current umask, or a group sharing runs/ cannot read them."""
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    expected = plain.stat().st_mode & 0o777
    _, (a, _) = two_runs
    written = [a / "checkpoints" / "last.ckpt", a / "cams" / "val" / "manifest.json",
               *sorted((a / "cams" / "val").glob("*.npz"))[:2]]
    assert {p.name: p.stat().st_mode & 0o777 for p in written} == {p.name: expected for p in written}
