"""Does the discriminator learn during distillation? One distillation run per variant, the heads' probe accuracy.

Each variant is `accvideo distill` with the demo's sizes plus its overrides; the probe (distill/probe.py) checks
the heads every `--probe-every` iterations on fixed trajectories against the student's own few-step generations.
Reported per key step: the probe accuracy averaged over the last half of the run, and its maximum.

    python benchmarks/adversarial_game.py --data runs/probe5/synvid --out benchmarks/results/adversarial_game.json

Runs land in --runs (kept, so a rerun resumes and reuses finished variants).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from accvideo.distill import DistillConfig, distill
from accvideo.distill.plots import read_losses

BASE = dict(
    iterations=200, batch=8, lr=1e-4, head_lr=1e-4, checkpoint_every=50, probe_every=10, probe_items=16, device="cpu"
)
VARIANTS = {
    "head_lr 1e-4, separate (the old demo)": {"adv_update": "separate"},
    "head_lr 1e-3, separate": {"head_lr": 1e-3, "adv_update": "separate"},
    "head_lr 1e-3, joint": {"head_lr": 1e-3, "adv_update": "joint"},
    "head_lr 1e-4, joint": {"adv_update": "joint"},
    "head_lr 1e-3, joint, head_steps 5": {"head_lr": 1e-3, "adv_update": "joint", "head_steps": 5},
}


def summarise(records: list[dict]) -> dict:
    probes = [r for r in records if r.get("probe_acc_k")]
    late = probes[len(probes) // 2 :]
    m = len(probes[0]["probe_acc_k"])
    return {
        "probe_iterations": [r["iteration"] for r in probes],
        "probe_acc_k": [r["probe_acc_k"] for r in probes],
        "late_mean_k": [sum(r["probe_acc_k"][k] for r in late) / len(late) for k in range(m)],
        "max_k": [max(r["probe_acc_k"][k] for r in probes) for k in range(m)],
        "final_traj": records[-1]["traj"],
        "late_d": sum(r["d"] for r in records[len(records) // 2 :]) / (len(records) - len(records) // 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="builtin")
    p.add_argument("--data", default=None, help="SynVid folder (needed unless --table)")
    p.add_argument("--out", required=True)
    p.add_argument("--runs", default="runs/adversarial_game")
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--only", default="", help="comma-separated variant indices (default: all)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--table", action="store_true", help="only print the table of an existing --out JSON")
    a = p.parse_args()
    if a.table:
        print(table(json.loads(Path(a.out).read_text())))
        return
    if a.threads:
        torch.set_num_threads(a.threads)
    names = list(VARIANTS)
    chosen = [names[int(i)] for i in a.only.split(",")] if a.only else names
    out = Path(a.out)
    data = json.loads(out.read_text()) if out.is_file() else {"rows": {}}
    for i, name in enumerate(names):
        if name not in chosen:
            continue
        run = Path(a.runs) / f"v{i}"
        t0 = time.perf_counter()
        cfg = DistillConfig(
            teacher=a.teacher, data=a.data, out=str(run), **{**BASE, "iterations": a.iterations, **VARIANTS[name]}
        )
        distill(cfg, progress=False)
        row = {"overrides": VARIANTS[name], "seconds": round(time.perf_counter() - t0, 1)}
        row.update(summarise(read_losses(run / "losses.jsonl")))
        data["rows"][name] = row
        print(name, "late", [round(x, 2) for x in row["late_mean_k"]], "max", [round(x, 2) for x in row["max_k"]])
        data["base"] = BASE
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=1) + "\n")
    print(table(data))


def table(data: dict) -> str:
    rows = data["rows"]
    m = len(next(iter(rows.values()))["late_mean_k"])
    lines = [
        "| run | " + " | ".join(f"k={k}" for k in range(m)) + " | L_D, late half | L_traj, last |",
        "|---" * (m + 3) + "|",
    ]
    for name, r in rows.items():
        accs = " | ".join(f"{x:.2f} ({y:.2f})" for x, y in zip(r["late_mean_k"], r["max_k"], strict=True))
        lines.append(f"| {name} | {accs} | {r['late_d']:.3f} | {r['final_traj']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
