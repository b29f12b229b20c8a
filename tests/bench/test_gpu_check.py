"""bench/gpu_check.py: the device check runs in its CPU mode, and one failing or hanging section does not stop it."""
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import gpu_check  # noqa: E402

EXPECTED = {"env", "pnoc_speed", "cam_predict", "random_walk", "scorecam", "ddp", "stages_32-true"}


@pytest.mark.slow
def test_cpu_mode_writes_the_whole_report(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "bench/gpu_check.py", "--cpu", "--out", str(tmp_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(report["sections"]) == EXPECTED
    bad = {n: s.get("error") for n, s in report["sections"].items() if s["status"] != "ok"}
    assert not bad and out.returncode == 0, (bad, out.stdout[-2000:])
    r = {n: s["result"] for n, s in report["sections"].items()}
    speed = r["pnoc_speed"]
    for k in ("reference_fp32", "ours_bf16_mixed", "plain_bf16_step"):
        assert speed[k]["img_per_s"] > 0
    assert speed["ours_over_fp32"] == pytest.approx(speed["ours_bf16_mixed"]["img_per_s"]
                                                    / speed["reference_fp32"]["img_per_s"])
    for stage in ("classifier", "pnoc"):  # both ranks wrote predictions: predict was sharded
        assert set(r["ddp"][f"{stage}_val_written_by_rank"]) == {"0", "1"}
        assert r["ddp"][f"{stage}_metrics"]["cams/val/miou"] > 0
    classifier = r["stages_32-true"]["wsss"]["classifier"]
    assert classifier["status"] == "ran" and 0 < classifier["metrics"]["cams/val/miou"] <= 1
    assert r["cam_predict"]["img_per_s"] > 0 and r["random_walk"]["ms_per_img"] > 0 and r["scorecam"]["img_per_s"] > 0
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| pnoc_speed | ok |" in md and "ours / fp32 =" in md and "| 32-true | wsss | classifier | ran |" in md


def test_a_failing_and_a_hanging_section_are_recorded_and_the_rest_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setattr(gpu_check, "SECTIONS", [("nosuch", 60, 60), ("env", 1, 1), ("random_walk", 120, 120)])
    args = gpu_check.argparse.Namespace(cpu=True, out=str(tmp_path), work=None, only=None)
    report = gpu_check.orchestrate(args)
    s = report["sections"]
    assert s["nosuch"]["status"] == "error" and "section_nosuch" in s["nosuch"]["error"]
    assert s["env"]["status"] == "timeout" and "stopped after 1 s" in s["env"]["error"]
    assert s["random_walk"]["status"] == "ok" and s["random_walk"]["result"]["ms_per_img"] > 0
    on_disk = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [n for n in on_disk["sections"]] == ["nosuch", "env", "random_walk"]
    assert "| env | timeout |" in (tmp_path / "gpu_check.md").read_text()
