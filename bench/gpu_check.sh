#!/usr/bin/env bash
# The GPU check on a one-GPU machine (bench/gpu_check.py says what it measures), usually through
# `make gpu-check`. It creates a virtualenv, installs wsss into it with pip, and writes gpu_check.json and
# gpu_check.md under $OUT (default ./gpu_check_out).
#
#   bash bench/gpu_check.sh                          # online: pip installs from PyPI (torch brings CUDA)
#   bash bench/gpu_check.sh --wheels /path/wheels    # offline: pip installs only from that folder
#   bash bench/gpu_check.sh --system-site-packages   # reuse a torch the machine's Python already has
#   bash bench/gpu_check.sh -- --only ddp            # after `--`: arguments of bench/gpu_check.py
#
# The folder of wheels for an offline machine is made on any machine with the same Python version and
# platform, from the repository root:
#   pip download --dest wheels setuptools torch==2.14.1 torchvision==0.29.1 '.[test]'
# The virtualenv is $GPU_CHECK_VENV (default .venv-gpu); a second run reuses it.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${GPU_CHECK_VENV:-.venv-gpu}
OUT=${OUT:-$PWD/gpu_check_out}
export OUT PYTHONUNBUFFERED=1
wheels="" venv_args=() check_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) wheels=${2:?"--wheels needs a folder of .whl files"}; shift 2 ;;
    --wheels=*) wheels=${1#--wheels=}; shift ;;
    --system-site-packages) venv_args+=(--system-site-packages); shift ;;
    --) shift; check_args+=("$@"); break ;;
    *) check_args+=("$1"); shift ;;
  esac
done
if [ -n "$wheels" ] && ! compgen -G "$wheels/*.whl" >/dev/null; then
  echo "gpu_check.sh: --wheels $wheels holds no .whl files (make them with: pip download --dest $wheels" \
       "setuptools torch==2.14.1 torchvision==0.29.1 '.[test]')" >&2
  exit 2
fi
pip_source=()
[ -n "$wheels" ] && pip_source=(--no-index --find-links "$wheels")
test -x "$VENV/bin/python" || "$PY" -m venv "${venv_args[@]}" "$VENV" \
  || { echo "gpu_check.sh: could not create the virtualenv $VENV with $PY" >&2; exit 1; }
if [ ${#venv_args[@]} -eq 0 ]; then
  "$VENV/bin/python" -m pip install -q "${pip_source[@]}" torch==2.14.1 torchvision==0.29.1 \
    || { echo "gpu_check.sh: installing torch into $VENV failed" >&2; exit 1; }
fi
"$VENV/bin/python" -m pip install -q "${pip_source[@]}" -e '.[test]' \
  || { echo "gpu_check.sh: installing wsss into $VENV failed" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
mkdir -p "$OUT"
"$VENV/bin/python" bench/gpu_check.py --out "$OUT" --work "${GPU_CHECK_WORK:-/tmp/gpu_check_work}" \
  "${check_args[@]}"
status=$?
head -40 "$OUT/gpu_check.md" 2>/dev/null
exit $status
