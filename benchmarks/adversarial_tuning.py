"""Can the adversarial term beat L_traj alone at m <= 2? Variants of the full method against (b), on the VAL split.

Every variant is row (d) of `accvideo ablate` (the demo's student sizes) with its own settings; (b) is L_traj
only with the same seed at the same m. All are scored on the same held-out pairs of the validation split (never
the test split: this is where settings are chosen), and each variant gets the paired difference to (b) with a
bootstrap 95% interval over clips, plus the heads' probe accuracy over the last half of its run.

    python benchmarks/adversarial_tuning.py --data runs/grid-b/synvid --out benchmarks/results/adversarial_tuning.json \
        --only 0,1,2,3,4,5,6,7,8 --plot docs/img/adversarial_tuning.png          # m = 1, 2 on the ablation's SynVid
    python benchmarks/adversarial_tuning.py --data runs/grid-a/synvid --out benchmarks/results/adversarial_tuning.json \
        --only 9,10,11 --teacher-row                                             # m = 5, real videos, the teacher
    python benchmarks/adversarial_tuning.py --data runs/grid-b/synvid --out benchmarks/results/adversarial_tuning.json \
        --only 0,17,18,5,19,20                                                   # stronger heads at m = 1, 2
    python benchmarks/adversarial_tuning.py --data runs/grid-c/synvid \
        --out benchmarks/results/adversarial_tuning_real.json --runs runs/adversarial_tuning_real \
        --only 23,24,25,26 --teacher-row --threads 2                            # real_weight at m = 3
    python benchmarks/adversarial_tuning.py --data runs/grid-b/synvid \
        --out benchmarks/results/adversarial_tuning_real.json --runs runs/adversarial_tuning_real \
        --only 0,5,27,28,29,30,31 --teacher-row --threads 1                     # real_weight at m = 2, 1

Runs and clips land in --runs (kept: a rerun resumes, re-scores finished variants without resampling them).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from accvideo.core.files import write_json_atomic
from accvideo.demo.ablate import key_indices
from accvideo.demo.chain import Sampler, distill_student, sample_and_score, training_seconds
from accvideo.demo.config import AblationConfig
from accvideo.distill.plots import read_losses
from accvideo.evaluate.intervals import compare, summarise
from accvideo.synthesize import SynVidDataset

# name -> (m, distill overrides); "b" rows are the baselines every other row at that m is compared with
VARIANTS = {
    "m1 b": (1, {"adv": False}),
    "m1 d, lambda_adv 0.1 (paper)": (1, {}),
    "m1 d, lambda_adv 0.03": (1, {"lambda_adv": 0.03}),
    "m1 d, lambda_adv 0.01": (1, {"lambda_adv": 0.01}),
    "m1 d, lambda_adv 0.1, warm-up 100": (1, {"adv_warmup": 100}),
    "m2 b": (2, {"adv": False}),
    "m2 d, lambda_adv 0.1 (paper)": (2, {}),
    "m2 d, lambda_adv 0.3": (2, {"lambda_adv": 0.3}),
    "m2 d, lambda_adv 0.1, warm-up 100": (2, {"adv_warmup": 100}),
    # beyond the paper: how much of the heads' reals should be real videos (row (e) of the ablation, m = 5)
    "m5 b": (5, {"adv": False}),
    "m5 e, real_weight 0.5": (5, {"real_data": "world", "real_weight": 0.5, "real_clips": 256}),
    "m5 e, real_weight 1.0": (5, {"real_data": "world", "real_weight": 1.0, "real_clips": 256}),
    # toward "(e) below the teacher": longer, a larger share of real videos, a stronger adversarial term
    "m5 e, real_weight 0.5, 600 iterations": (
        5,
        {"real_data": "world", "real_weight": 0.5, "real_clips": 256, "iterations": 600},
    ),
    "m5 e, real_weight 0.7": (5, {"real_data": "world", "real_weight": 0.7, "real_clips": 256}),
    "m5 e, real_weight 0.5, lambda_adv 0.3": (
        5,
        {"real_data": "world", "real_weight": 0.5, "real_clips": 256, "lambda_adv": 0.3},
    ),
    "m5 e, real_weight 0.7, lambda_adv 0.3": (
        5,
        {"real_data": "world", "real_weight": 0.7, "real_clips": 256, "lambda_adv": 0.3},
    ),
    "m5 e, real_weight 0.85": (5, {"real_data": "world", "real_weight": 0.85, "real_clips": 256}),
    # stronger heads at m <= 2: several head steps per student step (on the same features), and R1
    "m1 d, head_steps 5": (1, {"head_steps": 5}),
    "m1 d, r1 1": (1, {"r1": 1.0}),
    "m2 d, head_steps 5": (2, {"head_steps": 5}),
    "m2 d, r1 1": (2, {"r1": 1.0}),
    # around the val choice real_weight 1.0: a stronger and a weaker adversarial term
    "m5 e, real_weight 1.0, lambda_adv 0.3": (
        5,
        {"real_data": "world", "real_weight": 1.0, "real_clips": 256, "lambda_adv": 0.3},
    ),
    "m5 e, real_weight 1.0, lambda_adv 0.03": (
        5,
        {"real_data": "world", "real_weight": 1.0, "real_clips": 256, "lambda_adv": 0.03},
    ),
    # real_weight at m = 3, where the test split's ablation used the m = 5 choice untuned (docs/demo.md)
    "m3 b": (3, {"adv": False}),
    "m3 d, lambda_adv 0.1 (paper)": (3, {}),
    "m3 e, real_weight 0.5": (3, {"real_data": "world", "real_weight": 0.5, "real_clips": 256}),
    "m3 e, real_weight 1.0": (3, {"real_data": "world", "real_weight": 1.0, "real_clips": 256}),
    # real_weight at m = 2 and 1 (the test split's ablation used the m = 5 choice untuned), and a weaker
    # adversarial term at m = 1, where 1.0 still lost to (b) on the test split
    "m2 e, real_weight 0.5": (2, {"real_data": "world", "real_weight": 0.5, "real_clips": 256}),
    "m2 e, real_weight 1.0": (2, {"real_data": "world", "real_weight": 1.0, "real_clips": 256}),
    "m1 e, real_weight 1.0": (1, {"real_data": "world", "real_weight": 1.0, "real_clips": 256}),
    "m1 e, real_weight 1.0, lambda_adv 0.03": (
        1,
        {"real_data": "world", "real_weight": 1.0, "real_clips": 256, "lambda_adv": 0.03},
    ),
    "m1 e, real_weight 1.0, lambda_adv 0.01": (
        1,
        {"real_data": "world", "real_weight": 1.0, "real_clips": 256, "lambda_adv": 0.01},
    ),
}


TEACHER = "teacher, 50 steps"


def curves(records: list[dict], window: int = 20) -> dict:
    """The run's curves for the plot: L_traj as a running mean over `window` iterations, the probe per key step."""
    traj = [r["traj"] for r in records]
    probes = [r for r in records if r.get("probe_acc_k")]
    return {
        "iterations": [r["iteration"] for r in records][window - 1 :: 5],
        "traj_mean": [sum(traj[i - window + 1 : i + 1]) / window for i in range(window - 1, len(traj), 5)],
        "probe_iterations": [r["iteration"] for r in probes],
        "probe_acc_k": [r["probe_acc_k"] for r in probes],
    }


def plot(data: dict, path: Path) -> None:
    """Per m: L_traj (running mean) and the heads' probe accuracy at k = 0 against the iteration, one line a variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = sorted({r["m"] for r in data["rows"].values() if r.get("curves")})
    fig, axes = plt.subplots(len(ms), 2, figsize=(10, 3.2 * len(ms)), squeeze=False)
    for row_axes, m in zip(axes, ms, strict=True):
        here = [(name, r) for name, r in data["rows"].items() if r["m"] == m and r.get("curves")]
        for i, (name, r) in enumerate(here):  # one colour a variant in both panels
            c, color = r["curves"], f"C{i}"
            row_axes[0].plot(c["iterations"], c["traj_mean"], lw=1, color=color, label=name)
            if c["probe_acc_k"]:
                acc = [a[0] for a in c["probe_acc_k"]]
                row_axes[1].plot(c["probe_iterations"], acc, lw=1, marker=".", color=color, label=name)
        row_axes[0].set_title(f"m = {m}: L_traj, running mean of 20 iterations", fontsize=9)
        row_axes[1].set_title(f"m = {m}: heads' probe accuracy at k = 0 (0.5: chance)", fontsize=9)
        row_axes[1].axhline(0.5, color="grey", ls="--", lw=1)
        for ax in row_axes:
            ax.set_xlabel("iteration")
            ax.grid(alpha=0.3)
        row_axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def probe_late(records: list[dict]) -> list[float] | None:
    """The heads' probe accuracy per key step, averaged over the last half of the run's probes."""
    probes = [r["probe_acc_k"] for r in records if r.get("probe_acc_k")]
    if not probes:
        return None
    late = probes[len(probes) // 2 :]
    return [sum(p[k] for p in late) / len(late) for k in range(len(late[0]))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data", default=None, help="a SynVid holding the key latents of m = 1 and 2 (needed unless --table)"
    )
    p.add_argument("--out", required=True, help="the JSON written")
    p.add_argument("--runs", default="runs/adversarial_tuning")
    p.add_argument("--eval-prompts", type=int, default=128)
    p.add_argument("--seed", type=int, default=0, help="the training seed of every run")
    p.add_argument("--only", default="", help="comma-separated variant indices (default: all)")
    p.add_argument("--teacher-row", action="store_true", help="also score the 50-step CFG teacher (the reference)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--table", action="store_true", help="only print the table of an existing --out JSON")
    p.add_argument("--plot", default=None, help="also draw the curves of the --out JSON here (PNG)")
    a = p.parse_args()
    if a.table:
        data = json.loads(Path(a.out).read_text())
        print(table(data))
        if a.plot:
            plot(data, Path(a.plot))
        return
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = AblationConfig(out=a.runs, split="val", eval_prompts=a.eval_prompts, threads=a.threads)
    names = list(VARIANTS)
    chosen = [names[int(i)] for i in a.only.split(",")] if a.only else names
    sigmas = SynVidDataset(a.data).settings.sigmas
    samplers, rows = [], {}
    for i, name in enumerate(names):
        if name not in chosen:
            continue
        m, overrides = VARIANTS[name]
        t0 = time.perf_counter()
        key_sigmas = [float(sigmas[j]) for j in key_indices(cfg.teacher_steps, m)]
        run = distill_student(cfg, Path(a.data), f"runs/v{i}", False, seed=a.seed, key_sigmas=key_sigmas, **overrides)
        samplers.append(Sampler(f"v{i}", str(run), None, None, name))
        # the training behind the weights; None for a finished run from before the count (the JSON keeps its old)
        seconds = training_seconds(run)
        rows[name] = {"m": m, "data": a.data, "overrides": overrides, "seconds": seconds and round(seconds, 1)}
        records = read_losses(run / "losses.jsonl")
        rows[name]["probe_late_k"], rows[name]["curves"] = probe_late(records), curves(records)
        print(f"{name}: distilled in {time.perf_counter() - t0:.1f} s", flush=True)
    if a.teacher_row:
        samplers.append(Sampler("teacher-n", cfg.teacher, cfg.teacher_steps, cfg.guidance, TEACHER))
        rows[TEACHER] = {"m": cfg.teacher_steps, "overrides": {"guidance": cfg.guidance}, "curves": None}
    results = sample_and_score(cfg, samplers, False, split="val", per_clip=True)
    by_name = {s.label: results[s.name]["per_clip"] for s in samplers}
    for name, row in rows.items():
        row["metrics"] = summarise([by_name[name]], draws=cfg.draws, seed=cfg.seed)
        base = f"m{row['m']} b"
        if name != base and base in by_name:
            row["minus_b"] = compare([by_name[name]], [by_name[base]], draws=cfg.draws, seed=cfg.seed)
        if TEACHER in by_name and name != TEACHER:
            row["minus_teacher"] = compare([by_name[name]], [by_name[TEACHER]], draws=cfg.draws, seed=cfg.seed)
    data = {"split": "val", "eval_prompts": a.eval_prompts, "seed": a.seed, "rows": rows}
    out = Path(a.out)
    if out.is_file():  # keep the rows of variants not run this time
        old = json.loads(out.read_text())
        old_rows = old.get("rows", {})
        for name, row in rows.items():
            if row.get("seconds") is None and name in old_rows:
                row["seconds"] = old_rows[name].get("seconds")
        data["rows"] = {**old_rows, **rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, data)
    print(table(data))
    if a.plot:
        plot(data, Path(a.plot))


def table(data: dict) -> str:
    lines = [
        f"ToyBench on {data['eval_prompts']} val pairs, training seed {data['seed']}; [95% interval over clips]",
        "",
        "| variant | mean acc | shape acc | Frechet | minus (b): acc | minus (b): Frechet | minus teacher: Frechet "
        "| probe acc, late half |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in data["rows"].items():
        s, d = r["metrics"], r.get("minus_b")
        acc, shape, fd = s["accuracy"], s["shape"], s["frechet_distance"]
        cells = [
            f"{acc['mean']:.3f} [{acc['lo']:.3f}, {acc['hi']:.3f}]",
            f"{shape['mean']:.3f} [{shape['lo']:.3f}, {shape['hi']:.3f}]",
            f"{fd['mean']:.1f} [{fd['lo']:.1f}, {fd['hi']:.1f}]",
        ]
        if d:
            da, df = d["accuracy"], d["frechet_distance"]
            cells += [
                f"{da['diff']:+.3f} [{da['lo']:+.3f}, {da['hi']:+.3f}]",
                f"{df['diff']:+.1f} [{df['lo']:+.1f}, {df['hi']:+.1f}]",
            ]
        else:
            cells += ["-", "-"]
        t = r.get("minus_teacher", {}).get("frechet_distance")
        cells.append(f"{t['diff']:+.1f} [{t['lo']:+.1f}, {t['hi']:+.1f}]" if t else "-")
        probe = r.get("probe_late_k")
        cells.append(", ".join(f"{x:.2f}" for x in probe) if probe else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
