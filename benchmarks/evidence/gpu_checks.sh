#!/usr/bin/env bash
# The GPU checks on a lent machine: the GPU-marked tests, then `accvideo bench` at Wan2.1-1.3B's real size
# (random weights). Expects .whl/ with the diffusers, transformers and omegaconf wheels the machine lacks.
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 100 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_runtime.py tests/test_teacher.py 2>&1 \
  | tail -25 | tee "$OUT/gpu_tests.log"
timeout "${BENCH_S:-170}" python3 -m accvideo bench --random-weights --arch wan2.1-t2v-1.3b --size 480x832x81 \
  --out "$OUT/bench-1.3b" 2>&1 | tr '\r' '\n' | grep -v -E "it/s\]|step/s\]" | tail -40
