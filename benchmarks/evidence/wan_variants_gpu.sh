#!/usr/bin/env bash
# GPU step times of the Wan 2.1 I2V / Wan 2.2 families (bench/layouts.py; TI2V's text-to-video mode is a real
# family now, models/wan_ti2v.py), random weights, bf16:
# Wan2.1-I2V-14B-480P, Wan2.2-TI2V-5B and Wan2.2-T2V-A14B at their published sizes. Few steps on purpose: the
# per-step time is the measurement, and a 50-step 14B teacher would not fit a lent machine's minutes.
# Each run: bench.json / bench.md in $OUT/bench-ARCH. ARCHS="name:HxWxF ..." overrides (CPU smoke: the *-tiny ones).
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
source "$(dirname "$0")/gpu_env.sh"
ARCHS=${ARCHS:-"wan2.2-ti2v-5b:704x1280x121 wan2.1-i2v-14b-480p:480x832x81 wan2.2-t2v-a14b:720x1280x81"}
for entry in $ARCHS; do
  arch=${entry%%:*}; size=${entry#*:}
  timeout "${BENCH_S:-170}" $PY -m accvideo bench --random-weights --arch "$arch" --size "$size" \
    --teacher-steps 2 --student-steps 1 --vae-tiling auto --out "$OUT/bench-$arch" 2>&1 \
    | tr '\r' '\n' | grep -v -E "it/s\]|step/s\]" | tail -20
done
