#!/usr/bin/env bash
# Phase B: one student; usage: evidence_b.sh NAME KEY_SIGMAS [extra key=value...]
set -euo pipefail
cd "${RUNS_ROOT:-.}"
export OMP_NUM_THREADS=1
name=$1; keys=$2; shift 2
accvideo distill --data runs/synvid --out runs/$name iterations=400 batch=16 lr=1e-4 \
   head_lr=1e-4 checkpoint_every=100 "key_sigmas=$keys" "$@" > runs/$name.log 2>&1
echo $name done
