#!/usr/bin/env bash
# The refinement chain on the synthetic set, one command:
#   classifier CAMs → affinity labels → AffinityNet → random walk → pseudo masks (RW + CRF),
# then one table of the mIoU of the CAMs, of the RW maps and of the RW + CRF pseudo masks.
#
#   scripts/affinity_synthetic.sh [extra overrides for both runs, e.g. trainer=cpu]
#
# Both runs resume (same command = same run folders under ${WSSS_RUNS:-runs}). The CAM and RW numbers are
# the best of a background-threshold sweep (threshold picked on ground truth, the usual CAM protocol); the
# pseudo masks use the fixed stage.pseudo_masks.bg_threshold (no ground truth involved).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUN_NAME=${RUN_NAME:-default}
export WSSS_ROOT=${WSSS_ROOT:-$PWD}
RUNS=${WSSS_RUNS:-$WSSS_ROOT/runs}
CLS_DIR="$RUNS/classifier/synthetic/resnet18/$RUN_NAME"
AFF_DIR="$RUNS/affinity/synthetic/resnet18/$RUN_NAME"

start=$(date +%s)
"$PY" run.py experiment=synthetic stage=classifier run_name="$RUN_NAME" "$@"
cls_done=$(date +%s)

# The synthetic backbone is not ImageNet-pretrained, so AffinityNet starts from the classifier's backbone
# (stage.backbone_checkpoint) and, unlike the reference (frozen ImageNet features), fine-tunes it
# (freeze_backbone=false, SGD momentum 0.9, 12 epochs): a frozen synthetic backbone barely learns boundaries
# (affinity loss 0.61 → 0.59 in 8 epochs). 96-px images: no padding to 512, radius 10 on the 24×24 stride-4
# grid, and exp_times=3 (T^8): T^256 diffuses across the whole 24×24 grid (val RW mIoU 0.65 at 3, 0.39 at 8).
"$PY" run.py experiment=synthetic stage=affinity run_name="$RUN_NAME" \
  stage.inputs.cams="$CLS_DIR/cams" stage.inputs.saliency=null \
  stage.backbone_checkpoint="$CLS_DIR/checkpoints/last.ckpt" \
  stage.max_epochs=${AFF_EPOCHS:-12} stage.batch_size=16 stage.lr=0.1 stage.momentum=0.9 stage.freeze_backbone=false \
  stage.inference.pad_to=null stage.inference.exp_times=3 stage.crf_processes=${CRF_PROCESSES:-2} \
  "$@"
end=$(date +%s)

"$PY" - "$AFF_DIR/metrics.json" "$((cls_done - start))" "$((end - cls_done))" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"\nsynthetic set, resnet18 (classifier {sys.argv[2]} s, affinity stage {sys.argv[3]} s)")
print(f"{'split':6} {'CAM (best thr)':>16} {'RW (best thr)':>16} {'RW + CRF (fixed thr)':>22} {'aff. labels':>12}")
for split in ("train", "val"):
    cam, rw = m[f"cams/{split}/miou"], m[f"rw/{split}/miou"]
    pm = m[f"pseudo_masks/{split}/miou"]
    lab = m.get(f"affinity_labels/{split}/miou")
    print(f"{split:6} {100 * cam:9.1f} @ {m[f'cams/{split}/best_threshold']:.2f}"
          f" {100 * rw:9.1f} @ {m[f'rw/{split}/best_threshold']:.2f} {100 * pm:22.1f}"
          + (f" {100 * lab:7.1f} ({100 * m[f'affinity_labels/{split}/coverage']:.0f}% px)" if lab is not None else ""))
    print(f"{'':6} pseudo masks {'beat' if pm > cam else 'do NOT beat'} the CAMs on {split} ({100 * (pm - cam):+.1f})")
EOF
