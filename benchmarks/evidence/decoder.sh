#!/usr/bin/env bash
# docs/decoder.md's numbers on 2 CPU cores, one thread per job: the demo's SynVid (384 train-split trajectories of the
# built-in teacher, 5 key steps) and 5-step student, the tiny decoder distilled from its VAE (timed: /usr/bin/time),
# then the side-by-side comparison on 256 held-out pairs. Run from the repository root.
set -euo pipefail
export OMP_NUM_THREADS=1
D=runs/data
mkdir -p $D
accvideo prompts --n 384 --split train --seed 0 --out $D/prompts.jsonl
accvideo synthesize --teacher builtin --prompts $D/prompts.jsonl --out $D/synvid --steps 50 --key-steps 5 \
    --guidance 5 --seed 0 --batch 32
accvideo distill --teacher builtin --data $D/synvid --out $D/distill iterations=200 batch=8 lr=1e-4 head_lr=1e-3 \
    checkpoint_every=50 seed=0
/usr/bin/time -v accvideo decoder distill --teacher builtin --data $D/synvid --out runs/dec_final --threads 1 \
    > runs/dec_final.log 2>&1
python benchmarks/decoder.py --student $D/distill --decoder runs/dec_final --n 256 --threads 1 \
    --json benchmarks/results/decoder.json
python benchmarks/decoder_gpu.py --arch wan-tiny --size 64x64x17 --device cpu \
    --json benchmarks/results/decoder_gpu_cpu_tiny.json
