"""Known user errors: one paragraph on the screen, no traceback (it goes to the run folder's app.log); a typed
key the config lacks gets the nearest keys it has; a typed hyperparameter of a wrong type is refused before
torch is imported."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT
from wsss.app import CONF_DIR
from wsss.user_errors import did_you_mean


def run_py(cwd, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSSS_")}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_stage_lr_abc_and_an_unread_added_key_are_refused_before_torch_is_imported(tmp_path):
    code = ("import sys; from wsss.app import main\n"
            "sys.argv = ['run.py', 'stage=pnoc', 'stage.lr=abc', '+stage.lrr=0.5']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, 'torch' in sys.modules)")
    env = {**os.environ, "WSSS_RUNS": str(tmp_path / "runs")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         cwd=tmp_path)
    assert out.stdout.split() == ["1", "False"], out.stderr[-2000:]
    assert out.stderr.strip() == ("error: +stage.lrr on the command line: stage pnoc does not read lrr "
                                  "(conf/stage/pnoc.yaml); did you mean stage.lr?; stage.lr='abc': expected a "
                                  "number (conf/stage/pnoc.yaml: lr: 0.1)")


def test_a_key_not_in_the_config_gets_the_nearest_keys():
    hint = did_you_mean(["stage=pnoc", "stage.lrr=0.1", "dataset.args.rot=/x", "seed=1"], CONF_DIR)
    first, second = hint.splitlines()
    assert first.startswith("stage.lrr is not a key of this config: did you mean stage.lr or ")
    assert second.startswith("dataset.args.rot is not a key of this config: did you mean dataset.args.root")
    assert did_you_mean(["stage.lr=0.1"], CONF_DIR) is None


def test_a_missing_data_folder_is_one_paragraph_and_the_traceback_is_in_the_log(tmp_path):
    out = run_py(tmp_path, "dataset=voc12", f"dataset.args.root={tmp_path / 'VOC2012'}", "debug=tiny")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout
    assert f"error: dataset.args.root='{tmp_path / 'VOC2012'}' is not a folder" in out.stderr
    log = (tmp_path / "runs" / "classifier" / "voc12" / "resnet18" / "default" / "app.log").read_text()
    assert "Traceback" in log and "FileNotFoundError" in log
