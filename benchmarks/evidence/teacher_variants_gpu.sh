#!/usr/bin/env bash
# Teacher variants on one GPU (the device run of docs/builtin.md): four transformer settings trained at once
# from the VAE and encoded clips of a CPU `accvideo teacher train` run, each scored with ToyBench on the GPU.
# Expects: .whl/ (diffusers, transformers, omegaconf wheels, where the GPU machine lacks them) and
# .gpuwork/base (vae.safetensors + latents.safetensors of runs/teacher.work). Results go to $OUT (or out/).
set -euo pipefail
OUT=${OUT:-out}; PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}; BASE=${BASE:-.gpuwork/base}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_env.sh"
if [ -f "$BASE/latents16.safetensors" ] && [ ! -f "$BASE/latents.safetensors" ]; then
  # the clips travel as float16 (a 64 MiB limit on what reaches the GPU machine); training reads float32
  $PY -c "
from safetensors import safe_open; from safetensors.torch import load_file, save_file
src = '$BASE/latents16.safetensors'; meta = safe_open(src, 'pt').metadata(); d = load_file(src)
d['latents'] = d['latents'].float(); save_file(d, '$BASE/latents.safetensors', metadata=meta)"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
$PY -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
$PY benchmarks/teacher_variants.py --base "$BASE" --out /tmp/variants --device "$DEVICE" --budget-s "${BUDGET:-420}" \
  --n 128 --threads 2 --classifier src/accvideo/assets/classifier \
  --variant cpu=steps=8000,lr=5e-4 \
  --variant cpu-long=steps=11000,lr=1e-3 \
  --variant gpu-b256=batch=256,lr=1e-3,warmup=500,steps=8000 \
  --variant gpu-big=batch=256,layers=6,heads=5,ffn_dim=640,lr=1e-3,warmup=500,steps=8000 \
  2>&1 | grep -v -E "it/s\]|clip/s\]|step/s" | tee "$OUT/variants.log"
cp /tmp/variants/variants.json "$OUT/"
for v in cpu cpu-long gpu-b256 gpu-big; do
  if [ -f /tmp/variants/$v/model_index.json ]; then tar czf "$OUT/$v.tgz" -C /tmp/variants $v; fi
done
tar czf "$OUT/logs.tgz" -C /tmp/variants $(cd /tmp/variants && ls *.log *.json */accvideo_teacher.yaml *.work/transformer_log.jsonl 2>/dev/null)
