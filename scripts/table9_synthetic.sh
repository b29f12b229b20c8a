#!/usr/bin/env bash
# A Table-9-like table on the synthetic set: C²AM vs C²AM-H (hints from the classifier and, when the
# pnoc stage exists, from P-NOC), priors (C²AM saliency, P) and maps refined by the saliency network
# (PoolNet, R): fg/bg mIoU, class-aware mIoU with GT classes, and with the classifier's CAMs.
#
#   scripts/table9_synthetic.sh            # small CPU settings (env vars below change them)
#   RUNS=/tmp/t9 EPOCHS_CCAM=10 scripts/table9_synthetic.sh
# Every stage resumes (same command = same run folder), so a rerun only redoes what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/table9_synthetic}
DATA=${DATA:-data}
SIZE=${SIZE:-64}
NTRAIN=${NTRAIN:-64}
NVAL=${NVAL:-16}
EPOCHS_CLS=${EPOCHS_CLS:-8}
EPOCHS_CCAM=${EPOCHS_CCAM:-4}
EPOCHS_SAL=${EPOCHS_SAL:-3}
WORKERS=${WORKERS:-0}

COMMON=(experiment=synthetic dataset.args.image_size=$SIZE "dataset.args.splits={train:$NTRAIN,val:$NVAL}"
        dataset.crop_size=$SIZE dataset.min_size=$((SIZE * 7 / 8)) dataset.max_size=$((SIZE * 9 / 8))
        paths.runs_dir=$RUNS paths.data_dir=$DATA num_workers=$WORKERS logger=csv trainer.accelerator=cpu
        trainer.enable_progress_bar=false "stage.inference.scales=[1.0,1.5]")
# run <log name> <overrides...>: one log file per stage run under $RUNS/logs/
run() { local name=$1; shift; "$PY" run.py "${COMMON[@]}" "$@" >"$RUNS/logs/$name.txt" 2>&1 ||
        { echo "failed: run.py $*  (see $RUNS/logs/$name.txt)" >&2; exit 1; }; }
mkdir -p "$RUNS/logs"
dir() { echo "$RUNS/$1/synthetic/resnet18/$2"; }

echo "[1] classifier CAMs"; run classifier stage=classifier stage.max_epochs=$EPOCHS_CLS "tasks=[fit,predict]" run_name=default
CAMS=$(dir classifier default)/cams
HINT_SOURCES=("classifier|$CAMS")
if [ -f conf/stage/pnoc.yaml ]; then
  echo "[1b] pnoc CAMs"; run pnoc stage=pnoc stage.max_epochs=$EPOCHS_CLS "tasks=[fit,predict]" run_name=default
  HINT_SOURCES+=("pnoc|$(dir pnoc default)/cams")
fi

CCAM=(stage=ccam stage.max_epochs=$EPOCHS_CCAM stage.batch_size=16 stage.crop_size=$SIZE stage.lr=0.01
      stage.pseudo.processes=2 stage.evaluation.cams=$CAMS stage.inputs.cams=$CAMS)
SAL=(stage=saliency stage.max_epochs=$EPOCHS_SAL stage.batch_size=8 stage.lr=1e-3 stage.frozen_bn=false
     "stage.level_channels=[32,32,64,64]" stage.evaluation.cams=$CAMS)
ROWS=()
echo "[2] C2AM (border polarity rule)"
run ccam_c2am "${CCAM[@]}" run_name=c2am
run saliency_c2am "${SAL[@]}" stage.inputs.pseudo_saliency=$(dir ccam c2am)/pseudo_saliency run_name=c2am
ROWS+=("C2AM|-|$(dir ccam c2am)|$(dir saliency c2am)")
for src in "${HINT_SOURCES[@]}"; do
  name=${src%%|*}; cams=${src#*|}
  echo "[3] C2AM-H, hints from $name"
  run ccam_c2amh_$name "${CCAM[@]}" stage.hints.enabled=true stage.inputs.cams=$cams run_name=c2amh_$name
  run saliency_c2amh_$name "${SAL[@]}" stage.inputs.pseudo_saliency=$(dir ccam c2amh_$name)/pseudo_saliency run_name=c2amh_$name
  ROWS+=("C2AM-H|$name|$(dir ccam c2amh_$name)|$(dir saliency c2amh_$name)")
done
for split in train val; do
  echo; echo "synthetic $split (P = C2AM saliency priors, R = refined by the saliency network; CAM = classifier CAMs)"
  "$PY" -m wsss.saliency.table --split $split "${ROWS[@]}"
done
