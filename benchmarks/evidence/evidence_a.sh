#!/usr/bin/env bash
# Phase A: teacher ToyBench rows + SynVid of the built-in teacher (from the folder holding runs/)
set -euo pipefail
cd "${RUNS_ROOT:-.}"
export OMP_NUM_THREADS=1
A=accvideo
$A prompts --n 1024 --split train --out runs/prompts_train.jsonl
$A synthesize --prompts runs/prompts_train.jsonl --out runs/synvid --steps 60 \
   --key-indices 0,12,20,24,30,36,40,48,60 --batch 32 --shard-size 128 > runs/synvid.log 2>&1
echo synth done
