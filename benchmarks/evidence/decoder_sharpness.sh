#!/usr/bin/env bash
# docs/decoder.md's "Sharper frames" experiments, as they ran (after decoder_val.sh, whose runs/dec_last-s* are the
# defaults' decoders before the detail gain): losses that ask for the VAE's detail, one training seed each
# (seed 0, one thread, the targets linked), scored on 256 val clips against the defaults' seed 0; then the detail
# gain (detail_clips=32, today's default) with 3 seeds, paired against the same seeds without it.
set -euo pipefail
export OMP_NUM_THREADS=1
D=runs/data
train() {  # train OUT key=value...: one thread, the VAE targets of runs/dec_ema-s1 linked
    local out=$1; shift
    mkdir -p "$out" && cp -al runs/dec_ema-s1/targets "$out/" && cp runs/dec_ema-s1/.accvideo-output.json "$out/"
    accvideo decoder distill --teacher builtin --data $D/synvid --out "$out" --threads 1 "$@" > "$out.log" 2>&1
}
V="python benchmarks/decoder.py --student $D/distill --n 256 --split val --quick --threads 1"
for variant in "sb0.03 spectral_balance=true spectral_weight=0.03" "sb0.1 spectral_balance=true spectral_weight=0.1" \
    "ssim0.5 ssim_weight=0.5" "ssim2 ssim_weight=2"; do
    set -- $variant; name=$1; shift
    train runs/dec_$name-s0 seed=0 detail_clips=0 "$@"
    $V --decoder runs/dec_$name-s0 --against runs/dec_last-s0 --json benchmarks/results/decoder_val/$name.json
done
train runs/dec_detail-s0 seed=0 &
train runs/dec_detail-s1 seed=1
wait
train runs/dec_detail-s2 seed=2
$V --decoder runs/dec_detail-s0 runs/dec_detail-s1 runs/dec_detail-s2 \
    --against runs/dec_last-s0 runs/dec_last-s1 runs/dec_last-s2 --json benchmarks/results/decoder_val/detail32_3seeds.json
# the test split, once, for docs/decoder.md's table: the detail gain's 3 seeds against the same weights without it
python benchmarks/decoder.py --student $D/distill --decoder runs/dec_detail-s0 runs/dec_detail-s1 runs/dec_detail-s2 \
    --against runs/dec_last-s0 runs/dec_last-s1 runs/dec_last-s2 --n 256 --threads 1 \
    --json benchmarks/results/decoder.json
# the defaults timed alone on 2 idle threads, from scratch (targets included)
OMP_NUM_THREADS=2 /usr/bin/time -v accvideo decoder distill --teacher builtin --data $D/synvid --out runs/dec_time2 \
    --threads 2 > runs/dec_time2.log 2>&1
# where the gap lies (run before the detail gain was built; the decoder's gain is set to 0 inside)
python benchmarks/decoder_detail.py --student $D/distill --decoder runs/dec_last-s0 --targets runs/dec_ema-s1 \
    --n 256 --split val --threads 2 --json benchmarks/results/decoder_detail.json
