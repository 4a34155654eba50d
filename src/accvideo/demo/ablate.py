"""`accvideo ablate`: the paper's ablation (Table 3) as ToyBench numbers with intervals, for several m.

(a) the teacher with m Euler steps          no training
(b) + L_traj                                 distill adv=off
(c) + L_adv with one shared head             distill heads=shared (at cfg.shared_head_steps)
(d) + per-key-step heads (the full method)   distill (defaults)
(e) (d) + real videos as real samples        distill real_data=... (when cfg.real_data is set)

One SynVid holds the key latents of every m (the union of their grid indices); every trained row is distilled
once per training seed; every sampler is scored on the same held-out pairs, whose noise seeds no training run
ever used. Each cell is the mean over training seeds with a bootstrap 95% interval over clips and the seeds'
standard deviation (evaluate/intervals.py). OUT/ablation.json holds it all; ablation_tables() renders it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from accvideo.core.config import to_dict
from accvideo.core.files import write_json_atomic, write_text_atomic
from accvideo.core.outputs import FolderLock, claim_folder
from accvideo.core.runtime import resolve_device, resolve_model
from accvideo.demo.chain import (
    Sampler,
    Stages,
    check_training_settings,
    distill_student,
    kept_samplers,
    kept_seconds,
    read_json_dict,
    record_training_settings,
    report_kept,
    sample_and_score,
    synthesize_synvid,
    training_seconds,
    write_train_prompts,
)
from accvideo.demo.config import ABLATE_TRAINING, ABLATE_WHEN, AblationConfig, dropped_rows_line
from accvideo.distill.reals import check_real_data
from accvideo.errors import AccVideoError
from accvideo.evaluate.intervals import compare, summarise
from accvideo.models import adapter_class
from accvideo.synthesize import SynVidDataset

ROW_LABELS = {
    "a": "(a) teacher, m steps",
    "b": "(b) + L_traj",
    "c": "(c) + L_adv, one shared head",
    "d": "(d) + per-step heads (full)",
    "e": "(e) full + real videos",
}


def row_overrides(cfg: AblationConfig) -> dict[str, dict]:
    """The distill settings of each trained row, on top of the chain's."""
    adv = {"lambda_adv": cfg.lambda_adv, "adv_warmup": cfg.adv_warmup}
    return {
        "b": {"adv": False},
        "c": {"heads": "shared", **adv},
        "d": adv,
        "e": {"real_data": cfg.real_data, "real_weight": cfg.real_weight, "real_clips": cfg.real_clips, **adv},
    }


def run_name(cfg: AblationConfig, row: str, m: int, seed: int) -> str:
    """m<m>-<row>[-it<iterations>][-lam<lambda_adv>][-warm<adv_warmup>][-rw<real_weight>]-s<seed>: settings other
    than the defaults are in the name, so one ablation folder (one SynVid, one (b)) holds several of them side by
    side, and a run is never resumed under other settings."""
    defaults = AblationConfig()
    tag = ""
    if row != "a" and cfg.iterations != defaults.iterations:
        tag += f"-it{cfg.iterations}"
    if row in "cde" and cfg.lambda_adv != defaults.lambda_adv:
        tag += f"-lam{cfg.lambda_adv:g}"
    if row in "cde" and cfg.adv_warmup != defaults.adv_warmup:
        tag += f"-warm{cfg.adv_warmup}"
    if row == "e" and cfg.real_weight != defaults.real_weight:
        tag += f"-rw{cfg.real_weight:g}"
    return f"m{m}-{row}{tag}-s{seed}"


def key_indices(n: int, m: int) -> list[int]:
    """m+1 grid indices of an n-step grid, evenly spaced (rounded): {0, n/m, ..., n} when m divides n."""
    return [round(n * j / m) for j in range(m + 1)]


def stored_indices(synvid: Path, needed: set[int]) -> list[int]:
    """The grid indices to synthesize: an existing dataset's when they cover `needed` (a rerun with fewer m
    resumes it), else `needed`."""
    from accvideo.synthesize.dataset import build_index

    try:
        have = set(SynVidDataset(synvid, verify=False).settings.key_indices) if build_index(synvid) else set()
    except (AccVideoError, OSError):  # no dataset yet, or one that synthesize itself will judge
        have = set()
    return sorted(have if needed <= have else needed)


REPORT_FILES = ("ablation.json", "ablation.md", "ablation.png")  # a rerun that did no work keeps them as they are


def plan_rows(cfg: AblationConfig) -> list[tuple[str, int]]:
    """(row, m) cells in table order; (c) only at shared_head_steps, (e) only with real_data at real_data_steps."""
    cells = []
    for m in cfg.key_steps:
        for row in cfg.rows:
            if row == "c" and m not in cfg.shared_head_steps:
                continue
            if row == "e" and (not cfg.real_data or (cfg.real_data_steps is not None and m not in cfg.real_data_steps)):
                continue
            cells.append((row, m))
    return cells


def run_ablation(cfg: AblationConfig, progress: bool = True, echo=print) -> dict:
    """Distil every trained cell once per seed on one SynVid, score every sampler on the same pairs; JSON + tables."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    resolve_device(cfg.device)  # a device this machine lacks is refused before the folder is claimed
    adapter_class(resolve_model(cfg.teacher))  # likewise a teacher folder that is none
    if cfg.real_data and "e" in cfg.rows:
        check_real_data(cfg.real_data)  # before the SynVid: row (e) comes last
    if line := dropped_rows_line(cfg):
        echo(line)
    out = claim_folder(cfg.out, "ablate")
    with FolderLock(out, "ablate"):  # a second ablate on this folder would race this one's cells and tables
        return _ablation_stages(cfg, out, progress, echo)


def _ablation_stages(cfg: AblationConfig, out: Path, progress: bool, echo) -> dict:
    earlier = read_json_dict(out / "ablation.json")
    settings = check_training_settings(cfg, ABLATE_TRAINING, out / "ablation.json", ABLATE_WHEN)
    stages = Stages(echo)
    t0 = time.perf_counter()
    n = cfg.teacher_steps
    grids = {m: key_indices(n, m) for m in cfg.key_steps}
    reused = set()  # stages whose work an earlier invocation did: they keep its seconds
    with stages("prompts + synthesize"):
        union = stored_indices(out / "synvid", set().union(*grids.values()))
        synvid, written = synthesize_synvid(cfg, write_train_prompts(cfg), progress, key_indices=union)
    record_training_settings(cfg, "ablate", settings)  # once the SynVid took them (as demo's)
    reused |= {"prompts + synthesize"} if written == 0 else set()
    sigmas = SynVidDataset(synvid).settings.sigmas
    cells = plan_rows(cfg)
    overrides = row_overrides(cfg)
    samplers = [Sampler("teacher-n", cfg.teacher, n, cfg.guidance, f"teacher {n} steps")]
    members: dict[tuple[str, int], list[str]] = {}
    trained = earlier.get("train_seconds")  # kept for runs whose checkpoint lacks them
    trained = dict(trained) if isinstance(trained, dict) else {}
    for row, m in cells:
        if row == "a":
            samplers.append(Sampler(f"m{m}-a", cfg.teacher, m, cfg.guidance, ROW_LABELS["a"]))
            members[row, m] = [samplers[-1].name]
            continue
        key_sigmas = [float(sigmas[i]) for i in grids[m]]
        members[row, m] = []
        for seed in cfg.seeds:
            name = run_name(cfg, row, m, seed)
            before = training_seconds(out / "runs" / name)
            with stages(f"distill {name}"):
                run = distill_student(
                    cfg, synvid, f"runs/{name}", progress, seed=seed, key_sigmas=key_sigmas, **overrides[row]
                )
            samplers.append(Sampler(name, str(run), None, None, ROW_LABELS[row]))
            members[row, m].append(name)
            now = training_seconds(run)
            reused |= {f"distill {name}"} if now is not None and now == before else set()
            trained[name] = now or trained.get(name)
    kept = kept_samplers(cfg, samplers, cfg.split)
    with stages("sample + evaluate"):
        results = sample_and_score(cfg, samplers, progress, split=cfg.split, per_clip=True)
    reused |= {"sample + evaluate"} if kept == set(results) else set()
    with stages("intervals"):
        summary = {"teacher-n": {"label": samplers[0].label, **_summary(cfg, results, ["teacher-n"])}}
        for row, m in cells:
            summary[f"m{m}-{row}"] = {
                "label": ROW_LABELS[row],
                "row": row,
                "m": m,
                "runs": members[row, m],
                **_summary(cfg, results, members[row, m]),
            }
        comparisons = _comparisons(cfg, results, members)
    for r in results.values():
        r.pop("per_clip", None)
    seconds = {**stages.seconds, "total": round(time.perf_counter() - t0, 2)}
    data = {
        "config": to_dict(cfg),
        # this invocation's, but a stage it reused whole keeps the seconds measured before
        "seconds": kept_seconds(seconds, earlier.get("seconds"), reused),
        "train_seconds": trained,  # per run, the training behind its weights, however many invocations it took
        "cells": summary,
        "comparisons": comparisons,
        "samplers": results,
    }
    work = set(stages.seconds) - {"intervals"}
    if report_kept(earlier, data, reused, work, [out / name for name in REPORT_FILES]):
        echo(ablation_tables(earlier))
        echo(f"nothing to do: {out / 'ablation.md'} already reports these settings (every stage reused)")
        return earlier
    write_json_atomic(out / "ablation.json", data)
    tables = (
        ablation_tables(data)
        + "\n\nPaired differences (95% bootstrap intervals over clips):\n\n"
        + comparison_rows(data)
    )
    if cfg.seed_intervals:
        tables += (
            "\n\nThe same differences, 95% bootstrap intervals over training seeds and clips:\n\n"
            + comparison_rows(data, seeds=True)
        )
    write_text_atomic(
        out / "ablation.md",
        f"# Ablation (ToyBench, {cfg.eval_prompts} {cfg.split} pairs, seeds {cfg.seeds})\n\n{tables}\n\n"
        "![ablation](ablation.png)\n",
    )
    plot = ablation_plot(data, out / "ablation.png")
    echo(tables)
    echo(f"wrote {out / 'ablation.md'}, {out / 'ablation.json'} and {plot}")
    return data


COMPARISONS = (
    ("d", "b"),
    ("c", "b"),
    ("e", "d"),
    ("e", "b"),
    ("b", "teacher-n"),
    ("d", "teacher-n"),
    ("e", "teacher-n"),
)


def _comparisons(cfg: AblationConfig, results: dict, members: dict) -> list[dict]:
    """Paired differences between rows at the same m (and against the n-step teacher), with 95% intervals."""
    out = []
    for m in cfg.key_steps:
        for first, second in COMPARISONS:
            names = [members.get((first, m)), members.get((second, m)) if second != "teacher-n" else ["teacher-n"]]
            if not names[0] or not names[1]:
                continue
            sets = [[results[n]["per_clip"] for n in group] for group in names]
            stats = compare(*sets, draws=cfg.draws, seed=cfg.seed)
            if cfg.seed_intervals:  # the same difference, its interval over training seeds and clips
                wide = compare(*sets, draws=cfg.draws, seed=cfg.seed, resample_seeds=True)
                for name, value in stats.items():
                    value.update(seeds_lo=wide[name]["lo"], seeds_hi=wide[name]["hi"])
            out.append({"m": m, "first": first, "second": second, "metrics": stats})
    return out


def comparison_rows(data: dict, seeds: bool = False) -> str:
    """Markdown: each paired difference of mean accuracy and Frechet distance with its 95% interval over clips, or
    with `seeds` its interval over training seeds and clips (ablate seed_intervals=true; '' when not computed)."""
    lo, hi = ("seeds_lo", "seeds_hi") if seeds else ("lo", "hi")
    rows = [c for c in data.get("comparisons", []) if lo in c["metrics"]["accuracy"]]
    if not rows:
        return ""
    lines = ["| m | difference | mean acc | Frechet |", "|---|---|---|---|"]
    for c in rows:
        s = c["metrics"]
        second = "teacher" if c["second"] == "teacher-n" else f"({c['second']})"
        acc, fd = s["accuracy"], s["frechet_distance"]
        lines.append(
            f"| {c['m']} | ({c['first']}) - {second} | {acc['diff']:+.3f} [{acc[lo]:+.3f}, {acc[hi]:+.3f}] | "
            f"{fd['diff']:+.1f} [{fd[lo]:+.1f}, {fd[hi]:+.1f}] |"
        )
    return "\n".join(lines)


def _summary(cfg: AblationConfig, results: dict, names: list[str]) -> dict:
    stats = summarise([results[n]["per_clip"] for n in names], draws=cfg.draws, seed=cfg.seed)
    return {"steps": results[names[0]]["steps"], "guidance": results[names[0]]["guidance"], "metrics": stats}


def _cell(stat: dict, digits: int) -> str:
    text = f"{stat['mean']:.{digits}f} [{stat['lo']:.{digits}f}, {stat['hi']:.{digits}f}]"
    return text + (f" ±{stat['sd']:.{digits}f}" if len(stat["seeds"]) > 1 else "")


def ablation_tables(data: dict) -> str:
    """One markdown table: every cell's accuracy, Frechet distance and temporal consistency with intervals.

    Each value: mean over training seeds [95% bootstrap interval over clips] ±standard deviation over seeds.
    """
    lines = [
        "| m | row | seeds | guidance | mean acc | shape | Frechet | temporal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in data["cells"].values():
        s = c["metrics"]
        seeds = len(s["accuracy"]["seeds"])
        lines.append(
            f"| {c.get('m', c['steps'])} | {c['label']} | {seeds if c.get('row', 'a') != 'a' else '-'} | "
            f"{c['guidance']:g} | {_cell(s['accuracy'], 3)} | {_cell(s['shape'], 3)} | "
            f"{_cell(s['frechet_distance'], 1)} | {_cell(s['temporal_consistency'], 4)} |"
        )
    return "\n".join(lines)


def error_bars(stats: list[dict]) -> list[list[float]]:
    """matplotlib's yerr (below, above) for points `mean` with 95% intervals [lo, hi], each length at least 0.

    A percentile bootstrap interval need not hold its point estimate: the Frechet distance of resampled clips (which
    repeat clips) is biased, so on a few clips the mean can lie outside [lo, hi] (and at the edge of a degenerate
    interval it differs from it by rounding). Such a bar then spans from the interval to the mean, not past it."""
    return [[max(0.0, s["mean"] - s["lo"]) for s in stats], [max(0.0, s["hi"] - s["mean"]) for s in stats]]


def ablation_plot(data: dict, path: Path) -> Path:
    """Mean accuracy and Frechet distance against m, one line per row, 95% intervals as error bars."""
    from accvideo.core.plotting import pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    cells = [c for c in data["cells"].values() if "row" in c]
    teacher = data["cells"]["teacher-n"]["metrics"]
    for ax, metric, title in (
        (axes[0], "accuracy", "mean attribute accuracy (higher is better)"),
        (axes[1], "frechet_distance", "Frechet distance (lower is better)"),
    ):
        for row in dict.fromkeys(c["row"] for c in cells):
            pts = sorted((c["m"], c["metrics"][metric]) for c in cells if c["row"] == row)
            ms = [p[0] for p in pts]
            mean = [p[1]["mean"] for p in pts]
            ax.errorbar(
                ms, mean, yerr=error_bars([p[1] for p in pts]), marker="o", capsize=3, lw=1, label=ROW_LABELS[row]
            )
        ax.axhline(teacher[metric]["mean"], color="grey", ls="--", lw=1, label=data["cells"]["teacher-n"]["label"])
        ax.set_xlabel("student steps m")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
