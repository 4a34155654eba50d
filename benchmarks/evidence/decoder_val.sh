#!/usr/bin/env bash
# The val experiments of docs/decoder.md's last bullets ("A moving average of the weights", "A quarter more steps",
# "Twice the channels at the last stage"), as they ran: 3 training seeds each on the regenerated runs/data (the first
# commands of decoder.sh), one thread per job, the VAE targets decoded once and linked into the other runs.
# The averaged runs' last weights are the defaults' decoders (averaging changes no step), so every variant is paired
# against them on the same 256 val clips. Run from the repository root after decoder.sh's data commands.
set -euo pipefail
export OMP_NUM_THREADS=1
D=runs/data
train() {  # train OUT THREADS key=value...
    local out=$1 threads=$2; shift 2
    accvideo decoder distill --teacher builtin --data $D/synvid --out "$out" --threads "$threads" "$@" > "$out.log" 2>&1
}
link_targets() {  # reuse the first run's cached VAE decodes
    mkdir -p "$1" && cp -al runs/dec_ema-s1/targets "$1/" && cp runs/dec_ema-s1/.accvideo-output.json "$1/"
}
train runs/dec_ema-s1 1 seed=1 ema=0.999
for s in 0 2; do link_targets runs/dec_ema-s$s; done
train runs/dec_ema-s2 1 seed=2 ema=0.999 &
train runs/dec_ema-s0 1 seed=0 ema=0.999
wait
for s in 0 1 2; do python benchmarks/decoder_last_weights.py --run runs/dec_ema-s$s --out runs/dec_last-s$s; done
V="python benchmarks/decoder.py --student $D/distill --against runs/dec_last-s0 runs/dec_last-s1 runs/dec_last-s2
   --n 256 --split val --quick --threads 1"
$V --decoder runs/dec_ema-s0 runs/dec_ema-s1 runs/dec_ema-s2 --json benchmarks/results/decoder_val/ema0.999_3seeds.json
# seed 0 of each variant alone on 2 threads (timed), then seeds 1 and 2 side by side
for variant in "it6000 iterations=6000" "mw32 min_width=32"; do
    set -- $variant; name=$1; shift
    for s in 0 1 2; do link_targets runs/dec_$name-s$s; done
    OMP_NUM_THREADS=2 /usr/bin/time -v accvideo decoder distill --teacher builtin --data $D/synvid \
        --out runs/dec_$name-s0 --threads 2 "$@" > runs/dec_$name-s0.log 2>&1
    train runs/dec_$name-s1 1 seed=1 "$@" &
    train runs/dec_$name-s2 1 seed=2 "$@"
    wait
    $V --decoder runs/dec_$name-s0 runs/dec_$name-s1 runs/dec_$name-s2 \
        --json benchmarks/results/decoder_val/${name}_3seeds.json
done
# the defaults timed alone on an idle machine, from scratch (targets included)
OMP_NUM_THREADS=2 /usr/bin/time -v accvideo decoder distill --teacher builtin --data $D/synvid --out runs/dec_time \
    --threads 2 > runs/dec_time.log 2>&1
