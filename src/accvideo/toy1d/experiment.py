"""The whole 1D experiment (paper Figure 2): teacher, useless points, KD, DMD and AccVideo students."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from accvideo.core.config import to_dict
from accvideo.core.files import write_text_atomic
from accvideo.core.progress import progress_bar
from accvideo.core.sampling import euler_sample
from accvideo.core.schedules import shifted_sigmas, uniform_key_indices
from accvideo.errors import AccVideoError
from accvideo.toy1d.config import Toy1dConfig
from accvideo.toy1d.data import fraction_near, phase_generator, renoise, sample_mismatched
from accvideo.toy1d.dmd import train_dmd
from accvideo.toy1d.model import build_net
from accvideo.toy1d.train import (
    accvideo_batches,
    check_samples,
    fit,
    kd_batches,
    rollout,
    student_from,
    teacher_batches,
)
from accvideo.toy1d.useless import useless_frequency, useless_mask

# How many teacher trajectories panel (a) draws and how many KD pairs panel (b) draws.
SHOWN_TRAJECTORIES = 64
SHOWN_PAIRS = 400


@dataclass
class Toy1dResult:
    """`numbers` is what goes to the JSON; `arrays` feeds the plots."""

    numbers: dict
    arrays: dict = field(default_factory=dict)


def _student_entry(name: str, method: str, mismatch: float | None, samples: torch.Tensor, cfg: Toy1dConfig) -> dict:
    """One row of Figure 2f's comparison: how many samples land on +-a, and how far off the rest are."""
    gap = (samples.abs() - cfg.data_point).abs()
    return {
        "name": name,
        "method": method,
        "mismatch": mismatch,
        "fraction_near": fraction_near(samples, cfg.data_point, cfg.near),
        "mean_gap": float(gap.mean()),
    }


def run_toy1d(cfg: Toy1dConfig, seed: int = 0, progress: bool = True) -> Toy1dResult:
    """Run every phase of Figure 2 from `seed`; the numbers depend only on (cfg, seed)."""
    a = cfg.data_point
    sigmas = shifted_sigmas(cfg.teacher_steps, 1.0, torch.float32)
    keys = uniform_key_indices(cfg.teacher_steps, cfg.student_steps)
    key_sigmas = sigmas[keys]
    z_eval = torch.randn(cfg.eval_samples, generator=phase_generator(seed, "eval noise"))
    seconds: dict[str, float] = {}
    arrays: dict = {"sigmas": sigmas, "key_sigmas": key_sigmas}
    start = time.perf_counter()

    def tick(phase: str) -> None:
        seconds[phase] = round(time.perf_counter() - start - sum(seconds.values()), 2)

    # 1. teacher: flow matching on {-a, +a} (Figure 2a)
    teacher = build_net(cfg.channels, cfg.pe_dim, a, phase_generator(seed, "teacher init"))
    losses = fit(
        teacher,
        teacher_batches(cfg.teacher_batch, a),
        cfg.teacher_iters,
        cfg.teacher_lr,
        phase_generator(seed, "teacher batches"),
        desc="teacher",
        progress=progress,
        lr_name="teacher_lr",
    )
    shown = rollout(teacher, z_eval[:SHOWN_TRAJECTORIES], sigmas, list(range(len(sigmas))))
    teacher_samples = check_samples(euler_sample(teacher, z_eval, sigmas), "teacher", "teacher_lr", cfg.teacher_lr)
    teacher_few = euler_sample(teacher, z_eval, key_sigmas)
    arrays |= {"teacher_trajectories": shown, "teacher_samples": teacher_samples}
    tick("teacher")

    # 2. useless data points against mismatch M (Figure 2e) and the pairs of panel (b)
    freq = useless_frequency(
        teacher, cfg.useless_mismatches, cfg.useless_points, a, sigmas, cfg.tau, phase_generator(seed, "useless")
    )
    gen = phase_generator(seed, "pairs panel")
    x_d = sample_mismatched(SHOWN_PAIRS, cfg.pairs_mismatch, a, gen)
    level = torch.randint(0, len(sigmas) - 1, (SHOWN_PAIRS,), generator=gen)
    x_sigma = renoise(x_d, sigmas[level], torch.randn(SHOWN_PAIRS, generator=gen))
    pair_useless, pair_ends = useless_mask(teacher, x_sigma, level, x_d, sigmas, cfg.tau)
    arrays["pairs"] = {
        "x_d": x_d,
        "sigma": sigmas[level],
        "x_sigma": x_sigma,
        "useless": pair_useless,
        "teacher_end": pair_ends,
    }
    tick("useless points")

    # 3. students: AccVideo on teacher trajectories, KD on re-noised mismatched data (Figure 2f)
    students, samples = [], {}
    z_traj = torch.randn(cfg.num_trajectories, generator=phase_generator(seed, "trajectory noise"))
    key_latents = rollout(teacher, z_traj, sigmas, keys)
    runs = [("AccVideo", "accvideo", None, accvideo_batches(key_latents, key_sigmas, cfg.student_batch))]
    for m in cfg.kd_mismatches:
        runs.append(
            (
                f"KD M={m:g}",
                f"kd-{cfg.kd_target}",
                m,
                kd_batches(teacher, key_sigmas, cfg.student_batch, m, a, cfg.kd_target),
            )
        )
    for m in cfg.kd_teacher_label_mismatches:
        runs.append(
            (
                f"KD teacher-label M={m:g}",
                "kd-teacher",
                m,
                kd_batches(teacher, key_sigmas, cfg.student_batch, m, a, "teacher"),
            )
        )
    for name, method, m, batches in progress_bar(runs, desc="students", unit="student", show=progress):
        student = student_from(teacher)
        fit(
            student,
            batches,
            cfg.student_iters,
            cfg.student_lr,
            phase_generator(seed, f"student {name}"),
            desc=name,
            progress=progress,
            lr_name="student_lr",
        )
        samples[name] = check_samples(euler_sample(student, z_eval, key_sigmas), name, "student_lr", cfg.student_lr)
        students.append(_student_entry(name, method, m, samples[name], cfg))
    arrays["student_samples"] = samples
    tick("students")

    # 4. distribution matching: one-step generator, fake model fitted online (Figure 2c, d)
    dmd = train_dmd(
        teacher,
        z_eval,
        sigmas,
        iters=cfg.dmd_iters,
        fake_steps=cfg.dmd_fake_steps,
        batch=cfg.dmd_batch,
        lr=cfg.dmd_lr,
        fake_lr=cfg.dmd_fake_lr,
        tau=cfg.tau,
        generator=phase_generator(seed, "dmd"),
        progress=progress,
    )
    dmd_samples = check_samples(dmd.snapshots[cfg.dmd_iters], "DMD (1 step)", "dmd_lr", cfg.dmd_lr)
    students.append(_student_entry("DMD (1 step)", "dmd", None, dmd_samples, cfg))
    arrays["dmd"] = {"snapshots": dmd.snapshots, "draws": dmd.draws}
    tick("dmd")

    numbers = {
        "seed": seed,
        "config": to_dict(cfg),
        "tau": cfg.tau,
        "near": cfg.near,
        "teacher": {
            "final_loss": sum(losses[-100:]) / len(losses[-100:]),
            "fraction_near": fraction_near(teacher_samples, a, cfg.near),
            "fraction_near_key_steps": fraction_near(teacher_few, a, cfg.near),
        },
        "useless_frequency": [{"mismatch": m, "frequency": f} for m, f in freq.items()],
        "pairs_panel": {"mismatch": cfg.pairs_mismatch, "useless_fraction": float(pair_useless.float().mean())},
        "students": students,
        "dmd": {
            "fraction_near": fraction_near(dmd_samples, a, cfg.near),
            "fraction_near_by_step": {str(k): fraction_near(v, a, cfg.near) for k, v in dmd.snapshots.items()},
            "guidance_useless_fraction": float(dmd.draws["useless"].float().mean()),
            "guidance_wrong_side_fraction": float(dmd.draws["wrong"].float().mean()),
        },
        "seconds": seconds | {"total": round(time.perf_counter() - start, 2)},
    }
    return Toy1dResult(numbers, arrays)


def write_results(result: Toy1dResult, out: Path) -> list[Path]:
    """Write toy1d.json and the panel PNGs into `out`; returns the written paths."""
    from accvideo.toy1d.plots import draw_panels

    out.mkdir(parents=True, exist_ok=True)
    path = out / "toy1d.json"
    try:  # the last guard of "a run that diverged writes no NaN result" (JSON's NaN is not even standard JSON)
        text = json.dumps(result.numbers, indent=2, allow_nan=False) + "\n"
    except ValueError:
        raise AccVideoError(
            "toy1d: a result is NaN or infinite: stopped without writing toy1d.json or any plot; lower the learning "
            "rates (teacher_lr, student_lr, dmd_lr, dmd_fake_lr) and rerun"
        ) from None
    write_text_atomic(path, text)  # a link there is replaced, not written through
    return [path, *draw_panels(result, out)]


def summary_table(numbers: dict) -> str:
    """The short text table the command prints at the end."""
    cfg = numbers["config"]
    rows = [
        f"teacher ({cfg['teacher_steps']} steps): {numbers['teacher']['fraction_near']:.1%} "
        f"within {numbers['near']} of +-{cfg['data_point']:g}"
    ]
    rows.append(
        f"useless points (tau {numbers['tau']}): "
        + ", ".join(f"M={e['mismatch']:g}: {e['frequency']:.1%}" for e in numbers["useless_frequency"])
    )
    rows.append(f"{'student':<26}{'within ' + str(numbers['near']):>12}{'mean gap':>10}")
    rows += [f"{s['name']:<26}{s['fraction_near']:>12.1%}{s['mean_gap']:>10.3f}" for s in numbers["students"]]
    rows.append(
        f"DMD guidance draws: {numbers['dmd']['guidance_useless_fraction']:.1%} useless, "
        f"{numbers['dmd']['guidance_wrong_side_fraction']:.1%} pull towards the other mode"
    )
    rows.append(f"total {numbers['seconds']['total']:.0f} s")
    return "\n".join(rows)
