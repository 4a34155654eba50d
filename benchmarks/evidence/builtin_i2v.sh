#!/usr/bin/env bash
# The built-in image-to-video teacher (docs/builtin.md "An image-to-video teacher"), on this 2-core CPU, one thread:
# the fine-tune from the shipped text-to-video built-in, the demo chain on it (SynVid -> 5-step student), and its
# ToyBench rows in image-to-video mode on 256 test pairs with 95% bootstrap intervals.
set -euo pipefail
export OMP_NUM_THREADS=1
# 1. fine-tune (about 35 min here with another job on the second core): the yaml records steps, seconds, loss
accvideo teacher train --out runs/teacher-i2v --threads 1 image=true init=builtin steps=3500 lr=3e-4 warmup=100
# the untuned start (the built-in's weights in the TI2V image layout), as a reference row
python -c "
from diffusers import WanPipeline
from accvideo.core.runtime import builtin_model_dir
from accvideo.teacher.train import image_pipeline
image_pipeline(WanPipeline.from_pretrained(str(builtin_model_dir()))).save_pretrained('runs/builtin-i2v-untuned')"
# 2. the demo's chain at its size (384 trajectories, 200 iterations of batch 8) on the image-to-video teacher
/usr/bin/time -v accvideo demo --out runs/demo-i2v teacher=runs/teacher-i2v threads=1 > runs/demo-i2v.log 2>&1
cp runs/demo-i2v/report/metrics.json benchmarks/results/demo_i2v_metrics.json
# 3. ToyBench, image-to-video mode (the first frame of each test clip given); the paired differences are each
# file's `minus_first`
TB="python benchmarks/toybench.py --n 256 --split test --threads 1 --draws 1000"
$TB --run teacher-50=runs/teacher-i2v:50:5 --run teacher-5=runs/teacher-i2v:5:5 \
    --json benchmarks/results/toybench_i2v_teacher.json
$TB --run untuned-50=runs/builtin-i2v-untuned:50:5 --run untuned-5=runs/builtin-i2v-untuned:5:5 \
    --json benchmarks/results/toybench_i2v_untuned.json
$TB --run student-5=runs/demo-i2v/distill --run teacher-5=runs/teacher-i2v:5:5 \
    --json benchmarks/results/toybench_i2v_student.json
# 4. two more training seeds of the student (3 in all), scored against the naive 5-step teacher
for s in 1 2; do
    accvideo distill --teacher runs/teacher-i2v --data runs/demo-i2v/synvid --out runs/demo-i2v/distill-s$s \
        seed=$s iterations=200 batch=8 lr=1e-4 head_lr=1e-3 checkpoint_every=50
done
$TB --run student-5-s1=runs/demo-i2v/distill-s1 --run student-5-s2=runs/demo-i2v/distill-s2 \
    --run teacher-5=runs/teacher-i2v:5:5 --json benchmarks/results/toybench_i2v_student_seeds12.json
