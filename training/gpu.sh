#!/usr/bin/env bash
# One prepared GPU run of the round-2 recipe (issue 13): VGG-GAP on 40 px crops, on one CUDA GPU,
# finishing inside 9 minutes, bringing back the checkpoint, its log and the exported model.
#
# Prepare here (CPU), once:
#   .venv/bin/emoreel train --data ../shared/data/fer2013-train-val.zip --pack training/faces.npz
# Run on the lent machine (the device tool), carrying only the pack (git-ignored: it is data):
#   run(command="bash training/gpu.sh", carry=["training/faces.npz"], timeout_s=600)
# It needs Python with torch and numpy only (onnx for the export, when present); results land in $OUT.
set -euo pipefail
OUT=${OUT:-/tmp/emoreel-gpu}
IMAGES=${IMAGES:-2000000}  # ~70 epochs of FER2013's 28,709 training faces
mkdir -p "$OUT"
python - <<'PY'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__,
      "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))
PY
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# 520 s of training at most; every epoch is checkpointed, so a stop keeps all finished epochs
timeout 520 python -m emoreel.cli train --data training/faces.npz --out "$OUT/vgg-gpu" \
  --arch vgg --crop 40 --standardize --images "$IMAGES" --batch-size 256 --lr 0.02 --warmup 3 \
  --degrade 0 --yaw 20 --mixup 0 --compact --device cuda 2>&1 | tee "$OUT/vgg-gpu.log" || true
ls -la "$OUT/vgg-gpu"
if python -c "import onnx" 2>/dev/null; then
  python -m emoreel.cli export "$OUT/vgg-gpu/best.pt" -o "$OUT/emoreel-fer-large.onnx" || true
fi
