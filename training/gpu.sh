#!/usr/bin/env bash
# One prepared GPU run of the real-face recipe (issue 27): the shipped network fine-tuned on FER2013 train plus the
# webfaces training split (faces cropped the way analyze crops them, with small degraded copies), on one CUDA GPU,
# inside 9 minutes, bringing back the checkpoints, the log and the exported model.
#
# Prepare here (CPU), once (both packs are git-ignored data):
#   .venv/bin/emoreel train --data ../shared/data/fer2013-train-val.zip --pack training/faces.npz
#   .venv/bin/emoreel train --data ../shared/data/webfaces.zip --pack training/webfaces.npz
# Run on the lent machine (the device tool), carrying only the packs:
#   run(command="bash training/gpu.sh", carry=["training/faces.npz", "training/webfaces.npz"], timeout_s=600)
# It needs Python with torch and numpy only (onnx for the export, when present); results land in $OUT.
set -euo pipefail
OUT=${OUT:-/tmp/emoreel-gpu}
EPOCHS=${EPOCHS:-14}
mkdir -p "$OUT"
python - <<'PY'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__,
      "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))
PY
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# 520 s of training at most; every epoch is checkpointed, so a stop keeps all finished epochs
timeout 520 python -m emoreel.cli train --data training/faces.npz --add-data training/webfaces.npz --out "$OUT/real-gpu" \
  --init src/emoreel/models/emoreel-fer.onnx --standardize --degrade 0.15 --yaw 35 --class-weight-power 0.5 \
  --lr 0.01 --warmup 0.5 --epochs "$EPOCHS" --batch-size 256 --compact --device cuda 2>&1 | tee "$OUT/real-gpu.log" || true
ls -la "$OUT/real-gpu"
if python -c "import onnx" 2>/dev/null; then
  python -m emoreel.cli export "$OUT/real-gpu/best.pt" -o "$OUT/emoreel-fer-real.onnx" || true
fi
