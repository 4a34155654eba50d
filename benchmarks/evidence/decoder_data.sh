#!/usr/bin/env bash
# docs/decoder.md's "More training clips" experiment, as it ran: the same train-split prompts and seeds as the demo's
# SynVid, four times as many (1536; the first 384 are the demo's items), and the default decoder trained on them with
# 3 seeds: seed 1 alone on 2 threads (timed, targets included), then seeds 0 and 2 side by side on one thread each
# with the targets linked. Scored on 256 val clips, paired against the defaults trained on the 384-item SynVid
# (runs/dec_last-s*, from decoder_val.sh). Run from the repository root after decoder.sh's data commands.
set -euo pipefail
export OMP_NUM_THREADS=1
D=runs/data1536
mkdir -p $D
accvideo prompts --n 1536 --split train --seed 0 --out $D/prompts.jsonl
OMP_NUM_THREADS=2 accvideo synthesize --teacher builtin --prompts $D/prompts.jsonl --out $D/synvid --steps 50 \
    --key-steps 5 --guidance 5 --seed 0 --batch 32
train() {  # train OUT THREADS key=value...
    local out=$1 threads=$2; shift 2
    accvideo decoder distill --teacher builtin --data $D/synvid --out "$out" --threads "$threads" "$@" > "$out.log" 2>&1
}
OMP_NUM_THREADS=2 /usr/bin/time -v accvideo decoder distill --teacher builtin --data $D/synvid \
    --out runs/dec_d1536-s1 --threads 2 seed=1 > runs/dec_d1536-s1.log 2>&1
for s in 0 2; do
    mkdir -p runs/dec_d1536-s$s && cp -al runs/dec_d1536-s1/targets runs/dec_d1536-s$s/ \
        && cp runs/dec_d1536-s1/.accvideo-output.json runs/dec_d1536-s$s/
done
train runs/dec_d1536-s0 1 seed=0 &
train runs/dec_d1536-s2 1 seed=2
wait
python benchmarks/decoder.py --student runs/data/distill --decoder runs/dec_d1536-s0 runs/dec_d1536-s1 \
    runs/dec_d1536-s2 --against runs/dec_last-s0 runs/dec_last-s1 runs/dec_last-s2 --n 256 --split val --quick \
    --threads 1 --json benchmarks/results/decoder_val/data1536_3seeds.json
