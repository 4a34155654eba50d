#!/usr/bin/env bash
# The real-size dress rehearsal on a lent GPU (issue 18), one command: random-weight Wan2.1-1.3B at 480x832x81
# (synthesize 2 items x 50 steps -> distill 3 iterations, full and LoRA-64 -> export -> stock WanPipeline, 3 steps)
# and a real-width HunyuanVideo (2 + 2 blocks) at 544x960x33. Expected well under 10 minutes on an H100 or H200
# (estimate: about 7). Expects .whl/ with the wheels the machine lacks: make it here first
# (bash benchmarks/evidence/wheels.sh). Writes $OUT/rehearsal_gpu.json (its "device" names the card) and
# $OUT/rehearsal.log (the output without its progress bars; only its end is printed); copy the JSON to benchmarks/results/ and the numbers
# into docs/scale-out.md ("Real-size rehearsal"):
#   python benchmarks/rehearsal.py --table benchmarks/results/rehearsal_gpu.json
# On the lent machine: command `bash benchmarks/evidence/rehearsal.sh`, carry [".whl"], timeout_s 600. The JSON is
# rewritten at every stage, so a run cut short still returns what it measured. Checked on the CPU with the image's
# transformers 5.17 / huggingface_hub 1.33 and the carried wheels: `--tiny --bf16` passes (rc 0).
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)" || {
  echo "rehearsal.sh: torch sees no CUDA GPU here; the real sizes would run for hours on the CPU" >&2; exit 3; }
df -h /tmp . "$OUT" | sort -u  # estimate from file sizes: the full student peaks near 26 GB under /tmp (teacher, checkpoint, student)
# 560 s and a 10 s kill: the install and checks above fit in the device call's 600 s, and the JSON comes back
timeout -k 10 "${REHEARSAL_S:-560}" python3 benchmarks/rehearsal.py --out /tmp/rehearsal \
  --json "$OUT/rehearsal_gpu.json" 2>&1 | tr '\r' '\n' | grep --line-buffered -v -E "it/s\]|step/s\]|s/it\]" \
  | tee "$OUT/rehearsal.log" | tail -60
