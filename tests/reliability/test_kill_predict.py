"""Killing a predict pass: no partial file under a final name, no manifest, and a rerun writes only the rest."""
import json
import signal

import numpy as np
import pytest

from tests.reliability.common import finish, run_dir_of, run_in_process, start, wait_for

pytestmark = pytest.mark.timeout(900)

# untrained weights are fine here; many scales make each image slow enough to stop the pass midway
PREDICT = ["tasks=[predict]", "dataset.predict_splits=[train]", "stage.inference.scales=[1.0,1.5,2.0,2.5,3.0,3.5]"]


def predict_until_first_file(tmp_path, data_dir, name: str):
    """(run folder, CAM folder, process) of a predict pass that has just written its first file."""
    run_dir = run_dir_of(tmp_path, name)
    cams = run_dir / "cams" / "train"
    proc = start(tmp_path, data_dir, name, *PREDICT)
    wait_for(lambda: cams.is_dir() and any(cams.glob("*.npz")), proc, poll=0.005)
    return run_dir, cams, proc


def test_sigkill_midway_then_rerun_writes_only_the_missing(tmp_path, data_dir):
    run_dir, cams, proc = predict_until_first_file(tmp_path, data_dir, "predict")
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    done = {p.name: p.stat().st_mtime_ns for p in cams.glob("*.npz")}
    assert 0 < len(done) < 16, "the kill should land midway through the 16 images"
    assert not (cams / "manifest.json").exists()  # written last, so absent while incomplete
    for name in done:  # every file under a final name is complete
        with np.load(cams / name, allow_pickle=False) as z:
            assert z["cams"].shape[0] == len(z["keys"])

    run_in_process(run_dir, data_dir, *PREDICT)

    after = {p.name: p.stat().st_mtime_ns for p in cams.glob("*.npz")}
    assert len(after) == 16
    assert all(after[n] == t for n, t in done.items())  # nothing rewritten
    assert not list(cams.glob(".*.tmp"))
    manifest = json.loads((cams / "manifest.json").read_text())
    assert manifest["count"] == 16 and manifest["split"] == "train"


def test_sigterm_midway_stops_after_the_current_image_then_rerun_finishes(tmp_path, data_dir):
    run_dir, cams, proc = predict_until_first_file(tmp_path, data_dir, "predict_term")
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc)

    assert code == 128 + signal.SIGTERM, out[-3000:]
    assert "received SIGTERM: stopped predict after batch" in out and "Traceback" not in out
    done = sorted(p.name for p in cams.glob("*.npz"))
    assert 0 < len(done) < 16 and not list(cams.glob(".*.tmp"))
    assert not (cams / "manifest.json").exists()

    run_in_process(run_dir, data_dir, *PREDICT)
    assert json.loads((cams / "manifest.json").read_text())["count"] == 16
