#!/usr/bin/env bash
# Every measured number that stands on the built-in teacher, again, on 2 CPU cores (about 45 min):
# ToyBench of the teacher, SynVid + the 5/3/2-step students + their ToyBench, the demo and the ablation.
# Run from the repository root after a new teacher ships in src/accvideo/assets/builtin. Old runs move to
# runs/previous/ first (synthesize refuses to mix teachers in one dataset).
set -euo pipefail
export OMP_NUM_THREADS=1
mkdir -p runs/previous
for d in synvid s5 s3 s2 demo ablation; do
  if [ -e runs/$d ]; then rm -rf runs/previous/$d; mv runs/$d runs/previous/; fi
done
E=benchmarks/evidence
TB="python benchmarks/toybench.py --n 256 --threads 1"
# 1. SynVid || the teacher's ToyBench rows (same prompts and seeds as every row below)
bash $E/evidence_a.sh &
$TB --run teacher-50=builtin:50:5 --run teacher-5=builtin:5:5 --run teacher-50-cfg1=builtin:50:1 \
    --run teacher-3=builtin:3:5 --run teacher-2=builtin:2:5 --json benchmarks/results/toybench_teacher.json \
    > runs/toybench_teacher.log 2>&1
wait
# 2. students: 5-step || 3-step then 2-step
bash $E/evidence_b.sh s5 "[1.0,0.923076923077,0.818181818182,0.666666666667,0.428571428571,0.0]" &
bash $E/evidence_b.sh s3 "[1.0,0.857142857143,0.6,0.0]"
bash $E/evidence_b.sh s2 "[1.0,0.75,0.0]"
wait
# 3. the demo, then the students' ToyBench rows || the ablation (rows a-d at the demo's size)
accvideo ablate --out runs/ablation > runs/ablation.log 2>&1 &
/usr/bin/time -v accvideo demo --out runs/demo > runs/demo.log 2>&1
python benchmarks/toybench.py --n 256 --threads 1 --run student-5=runs/s5 --run student-3=runs/s3 \
    --run student-2=runs/s2 --json benchmarks/results/toybench_distill.json > runs/toybench_distill.log 2>&1
wait
echo all done
