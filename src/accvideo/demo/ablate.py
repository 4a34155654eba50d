"""`accvideo ablate`: the paper's ablation (Table 3) as ToyBench numbers on one SynVid.

(a) the teacher with m Euler steps          no training
(b) + L_traj                                 distill adv=off
(c) + L_adv with one shared head             distill heads=shared
(d) + per-key-step heads (the full method)   distill (defaults)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from accvideo.core.config import to_dict
from accvideo.core.files import write_json_atomic, write_text_atomic
from accvideo.core.outputs import claim_folder
from accvideo.demo.chain import (
    Sampler,
    Stages,
    distill_student,
    sample_and_score,
    synthesize_synvid,
    write_train_prompts,
)
from accvideo.demo.config import ChainConfig
from accvideo.demo.report import comparison_table

VARIANTS = {  # name -> (label, distill overrides); None: no training, the teacher itself with m steps
    "a-teacher": ("(a) teacher, m steps", None),
    "b-traj": ("(b) + L_traj", {"adv": False}),
    "c-shared-head": ("(c) + L_adv, one shared head", {"heads": "shared"}),
    "d-per-step-heads": ("(d) + per-step heads (full)", {}),
}


def run_ablation(cfg: ChainConfig, progress: bool = True, echo=print) -> dict:
    """Distil the three students on one SynVid, score all four rows on the same prompts; table, plot, JSON."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = claim_folder(cfg.out, "ablate")
    stages = Stages(echo)
    t0 = time.perf_counter()
    with stages("prompts + synthesize"):
        synvid = synthesize_synvid(cfg, write_train_prompts(cfg), progress)
    samplers = []
    for name, (label, overrides) in VARIANTS.items():
        if overrides is None:
            samplers.append(Sampler(name, cfg.teacher, cfg.key_steps, cfg.guidance, label))
            continue
        with stages(f"distill {name}"):
            run = distill_student(cfg, synvid, name, progress, **overrides)
        samplers.append(Sampler(name, str(run), None, None, label))
    with stages("sample + evaluate"):
        results = sample_and_score(cfg, samplers, progress)
    table = comparison_table(results)
    plot = ablation_plot(results, out / "ablation.png")
    seconds = {**stages.seconds, "total": round(time.perf_counter() - t0, 2)}
    data = {"config": to_dict(cfg), "seconds": seconds, "results": results, "table": table}
    write_json_atomic(out / "ablation.json", data)
    write_text_atomic(
        out / "ablation.md",
        f"# Ablation (ToyBench, {cfg.eval_prompts} held-out pairs)\n\n{table}\n\n![ablation](ablation.png)\n",
    )
    echo(table)
    echo(f"wrote {out / 'ablation.md'}, {out / 'ablation.json'} and {plot}")
    return data


def ablation_plot(results: dict[str, dict], path: Path) -> Path:
    """Two bar panels: mean attribute accuracy and Frechet distance per variant."""
    import matplotlib  # lazy: matplotlib is slow to import and only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["label"] for r in results.values()]
    acc = [r["accuracy"]["mean"] for r in results.values()]
    fd = [r["frechet_distance"] or 0.0 for r in results.values()]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, values, title in (
        (axes[0], acc, "mean attribute accuracy (higher is better)"),
        (axes[1], fd, "Frechet distance (lower is better)"),
    ):
        ax.barh(range(len(labels)), values, color="#4a7ab5")
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
