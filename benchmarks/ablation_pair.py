"""A paired difference between two groups of students of one `accvideo ablate` folder, with 95% intervals.

`accvideo ablate` compares rows at one setting ((e) - (d), (e) - (b), ...). Two settings of one row, e.g. row (e)
with `real_weight` 0.5 against 1.0, both trained in the same folder, need this: it re-scores the clips the ablation
kept (no sampling when they are there) on the same held-out pairs and bootstraps the difference of the group means,
resampling the same clips in every member (`evaluate/intervals.compare`).

    python benchmarks/ablation_pair.py --out runs/grid-a --first m5-e-rw1-s0,m5-e-rw1-s1,m5-e-rw1-s2 \
        --second m5-e-s0,m5-e-s1,m5-e-s2 --json benchmarks/results/ablation_m5_rw1_vs_rw05.json

--out, --split and --eval-prompts must be those of the ablation, so that its kept clips are found and reused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from accvideo.core.files import write_json_atomic
from accvideo.demo.chain import Sampler, sample_and_score
from accvideo.demo.config import AblationConfig
from accvideo.evaluate.intervals import compare


def line(name: str, stat: dict, digits: int) -> str:
    return f"{name}: {stat['diff']:+.{digits}f} [{stat['lo']:+.{digits}f}, {stat['hi']:+.{digits}f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the ablation's folder, exactly as given to `accvideo ablate`")
    p.add_argument("--first", required=True, help="comma-separated run names (OUT/runs/NAME)")
    p.add_argument("--second", required=True, help="comma-separated run names, subtracted")
    p.add_argument("--split", default="test")
    p.add_argument("--eval-prompts", type=int, default=256)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the result here")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = AblationConfig(out=a.out, split=a.split, eval_prompts=a.eval_prompts, threads=a.threads)
    groups = [a.first.split(","), a.second.split(",")]
    missing = [n for g in groups for n in g if not (Path(a.out) / "runs" / n).is_dir()]
    if missing:
        p.error(f"no run folder {Path(a.out) / 'runs' / missing[0]}; name runs of {a.out}/runs")
    samplers = [Sampler(n, str(Path(a.out) / "runs" / n), None, None, n) for g in groups for n in g]
    results = sample_and_score(cfg, samplers, progress=True, split=a.split, per_clip=True)
    sets = [[results[n]["per_clip"] for n in g] for g in groups]
    stats = compare(*sets, draws=cfg.draws, seed=cfg.seed)
    print(f"({a.first}) - ({a.second}), {a.eval_prompts} {a.split} pairs, 95% bootstrap intervals over clips:")
    print(line("mean accuracy", stats["accuracy"], 3))
    print(line("Frechet distance", stats["frechet_distance"], 1))
    if a.json:
        data = {"first": groups[0], "second": groups[1], "split": a.split, "eval_prompts": a.eval_prompts}
        write_json_atomic(Path(a.json), {**data, "metrics": stats})
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
