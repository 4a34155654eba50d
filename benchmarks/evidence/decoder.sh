#!/usr/bin/env bash
# docs/decoder.md's numbers on 2 CPU cores: the demo's SynVid (384 train-split trajectories of the built-in teacher,
# 5 key steps) and 5-step student (one thread per job); the tiny decoder distilled from its VAE with 3 training seeds
# (seeds 1 and 2 side by side on one thread each, then seed 0 alone on both cores, timed with /usr/bin/time); the
# side-by-side comparison on 256 held-out pairs (one thread), paired against the previous defaults (no spectral
# term, 3 seeds), and the detail energy by frequency of both; then the variants that chose the defaults (two
# single-thread jobs side by side). Run from the repository root.
set -euo pipefail
export OMP_NUM_THREADS=1
D=runs/data
mkdir -p $D
accvideo prompts --n 384 --split train --seed 0 --out $D/prompts.jsonl
accvideo synthesize --teacher builtin --prompts $D/prompts.jsonl --out $D/synvid --steps 50 --key-steps 5 \
    --guidance 5 --seed 0 --batch 32
accvideo distill --teacher builtin --data $D/synvid --out $D/distill iterations=200 batch=8 lr=1e-4 head_lr=1e-3 \
    checkpoint_every=50 seed=0
# training seeds 1 and 2 side by side (one thread each), then seed 0 alone on both cores: the timed run
for s in 1 2; do
    accvideo decoder distill --teacher builtin --data $D/synvid --out runs/dec_final-s$s seed=$s --threads 1 \
        > runs/dec_final-s$s.log 2>&1 &
done
wait
OMP_NUM_THREADS=2 /usr/bin/time -v accvideo decoder distill --teacher builtin --data $D/synvid --out runs/dec_final \
    --threads 2 > runs/dec_final.log 2>&1
# the previous defaults (no spectral term: spectral_weight=0), 3 seeds, two at a time: the paired baseline
accvideo decoder distill --teacher builtin --data $D/synvid --out runs/b8_dec_final spectral_weight=0 \
    --threads 1 > runs/b8_dec_final.log 2>&1 &
accvideo decoder distill --teacher builtin --data $D/synvid --out runs/b8_dec_final-s1 seed=1 spectral_weight=0 \
    --threads 1 > runs/b8_dec_final-s1.log 2>&1 &
wait
accvideo decoder distill --teacher builtin --data $D/synvid --out runs/b8_dec_final-s2 seed=2 spectral_weight=0 \
    --threads 1 > runs/b8_dec_final-s2.log 2>&1
python benchmarks/decoder.py --student $D/distill --decoder runs/dec_final runs/dec_final-s1 runs/dec_final-s2 \
    --against runs/b8_dec_final runs/b8_dec_final-s1 runs/b8_dec_final-s2 \
    --n 256 --threads 1 --json benchmarks/results/decoder.json
python benchmarks/decoder_spectrum.py --student $D/distill --decoder runs/b8_dec_final runs/dec_final --n 256 \
    --split test --json benchmarks/results/decoder_spectrum_test.json
python benchmarks/decoder_gpu.py --arch wan-tiny --size 64x64x17 --device cpu \
    --json benchmarks/results/decoder_gpu_cpu_tiny.json
V="python benchmarks/decoder_variants.py --data $D/synvid --targets runs/dec_final --runs runs/decoder-variants"
$V --only 0,2,4,6 --threads 1 &
$V --only 1,3,5 --threads 1
wait
python benchmarks/decoder_variants.py --runs runs/decoder-variants --json benchmarks/results/decoder_variants.json
