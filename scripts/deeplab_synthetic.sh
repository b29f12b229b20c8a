#!/usr/bin/env bash
# DeepLabV3+ on the synthetic shapes, trained (a) on pseudo masks made from a classifier's CAMs at its
# best background threshold and (b) on ground truth (the fully supervised upper bound); both evaluated
# on val; prints one Table-11 style table (IoU % per class, then the mean).
#
#   scripts/deeplab_synthetic.sh                 # small CPU settings (a few minutes on 2 cores)
#   CLS_EPOCHS=15 SEG_EPOCHS=20 TRAIN=240 scripts/deeplab_synthetic.sh
#   MASKS=runs/affinity/synthetic/resnet18/default/pseudo_masks scripts/deeplab_synthetic.sh  # RW masks
#
# Runs go to ${WSSS_RUNS:-runs}/{classifier,deeplab}/synthetic/resnet18/<RUN>; rerunning resumes/skips.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUNS=${WSSS_RUNS:-$PWD/runs}
RUN=${RUN:-deeplab_demo}
CLS_EPOCHS=${CLS_EPOCHS:-12}
SEG_EPOCHS=${SEG_EPOCHS:-12}
TRAIN=${TRAIN:-120}
VAL=${VAL:-40}
SIZE=${SIZE:-64}

COMMON=(dataset=synthetic backbone=resnet18 backbone.pretrained=false trainer=cpu logger=csv num_workers=0
        trainer.enable_progress_bar=false "paths.runs_dir=$RUNS"
        "dataset.args.splits={train:$TRAIN,val:$VAL}" "dataset.args.image_size=$SIZE" "dataset.crop_size=$SIZE"
        "dataset.min_size=$((SIZE * 7 / 8))" "dataset.max_size=$((SIZE * 9 / 8))")

if [[ -z "${MASKS:-}" ]]; then
  echo "== 1. classifier -> CAMs -> threshold sweep -> pseudo masks at the best threshold (train GT)"
  "$PY" run.py experiment=synthetic "${COMMON[@]}" run_name="$RUN" stage.max_epochs="$CLS_EPOCHS" \
    'tasks=[fit,predict,evaluate,cam_masks]'
  MASKS=$RUNS/classifier/synthetic/resnet18/$RUN/pseudo_masks
fi

SEG=("${COMMON[@]}" stage=deeplab stage.max_epochs="$SEG_EPOCHS" stage.batch_size=16 stage.lr=0.01
     stage.label_smoothing=0.0 stage.augment.color_jitter=false 'stage.inference.scales=[0.75,1.0,1.25]'
     'stage.predict_splits=[val]' 'stage.eval_splits=[val]')
echo "== 2. DeepLabV3+ on the pseudo masks ($MASKS; validated on pseudo masks of val only)"
"$PY" run.py "${SEG[@]}" stage.masks="$MASKS" run_name="${RUN}_pseudo"
echo "== 3. DeepLabV3+ on ground truth (upper bound)"
"$PY" run.py "${SEG[@]}" stage.masks=gt run_name="${RUN}_gt"

echo "== DeepLabV3+ on synthetic val (IoU %)"
"$PY" -m wsss.segmentation.evaluate --split val --csv "$RUNS/deeplab/synthetic/resnet18/${RUN}_table.csv" \
  "DeepLabV3+ (CAM pseudo masks)=$RUNS/deeplab/synthetic/resnet18/${RUN}_pseudo" \
  "DeepLabV3+ (ground truth)=$RUNS/deeplab/synthetic/resnet18/${RUN}_gt"
