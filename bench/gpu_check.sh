#!/usr/bin/env bash
# The device check on a bare one-GPU machine without network (bench/gpu_check.py says what it measures).
#
#   here, once:   bash ../shared/tools/gpu-wheels.sh        # fills .whl/ (hydra, omegaconf, albumentations, ...)
#   device tool:  run  command="bash bench/gpu_check.sh"  carry=[".whl"]  timeout_s=600
#
# Installs the carried wheels into /tmp/site (the image has torch, timm and Lightning already), then wsss with
# --no-deps (pip would otherwise chase the torch pin with no network), then writes gpu_check.json and
# gpu_check.md under $OUT (default ./gpu_check_out). Arguments go to bench/gpu_check.py (e.g. --only ddp).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/gpu_check_out}
export OUT PYTHONUNBUFFERED=1
site=${GPU_CHECK_SITE:-/tmp/site}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "gpu_check.sh: installing .whl/*.whl failed" >&2; exit 1; }
else
  echo "gpu_check.sh: no .whl/ here; run ../shared/tools/gpu-wheels.sh and carry .whl" >&2
fi
export PYTHONPATH=$PWD:$site${PYTHONPATH:+:$PYTHONPATH}   # the tree first: conf/ is found next to wsss/
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" . >/dev/null 2>&1 \
  || echo "gpu_check.sh: wsss not installed (no setuptools?); running from the tree via PYTHONPATH" >&2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
mkdir -p "$OUT"
"$PY" bench/gpu_check.py --out "$OUT" --work /tmp/gpu_check_work "$@"
status=$?
cat "$OUT/gpu_check.md" 2>/dev/null | head -40
exit $status
