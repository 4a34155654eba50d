"""The panels of paper Figure 2 as PNGs, one per panel plus an overview (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from accvideo.core.files import temp_name
from accvideo.core.plotting import pyplot
from accvideo.toy1d.experiment import Toy1dResult

plt = pyplot()  # the Agg backend, before matplotlib's other modules load
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure, SubFigure  # noqa: E402

RED, GREY, BLUE, ORANGE = "#d62728", "#9a9a9a", "#1f77b4", "#ff7f0e"
# Panels drawn at most this many guidance draws of the DMD student, to stay readable.
SHOWN_DRAWS = 600


def _segments(ax, sigma: torch.Tensor, x_from: torch.Tensor, x_to: torch.Tensor, **style) -> None:
    """Straight segments (sigma_i, x_from_i) -> (0, x_to_i), drawn as one collection (fast)."""
    pts = torch.stack([torch.stack([sigma, x_from], 1), torch.stack([torch.zeros_like(sigma), x_to], 1)], 1)
    ax.add_collection(LineCollection(pts.numpy(), **style))


def _sigma_axis(ax, result: Toy1dResult) -> None:
    a = result.numbers["config"]["data_point"]
    ax.set_xlim(1.0, 0.0)  # noise on the left, data on the right, as the ODE runs
    ax.set_xlabel("noise level sigma")
    ax.set_ylabel("x")
    ax.axhline(a, color="k", lw=0.5, ls=":")
    ax.axhline(-a, color="k", lw=0.5, ls=":")


def panel_a(fig: Figure | SubFigure, result: Toy1dResult) -> None:
    """(a) the teacher's ODE trajectories from Gaussian noise."""
    ax = fig.subplots()
    traj, sig = result.arrays["teacher_trajectories"], result.arrays["sigmas"]
    lines = torch.stack([sig[:, None].expand_as(traj), traj], -1).transpose(0, 1).numpy()
    colors = [BLUE if end > 0 else ORANGE for end in traj[-1].tolist()]
    ax.add_collection(LineCollection(lines, colors=colors, lw=0.7, alpha=0.7))
    ax.set_ylim(float(traj.min()) - 0.5, float(traj.max()) + 0.5)
    _sigma_axis(ax, result)
    t = result.numbers["teacher"]
    ax.set_title(
        f"(a) teacher trajectories: {t['fraction_near']:.1%} end within {result.numbers['near']} of the data",
        fontsize=9,
    )


def panel_b(fig: Figure | SubFigure, result: Toy1dResult) -> None:
    """(b) KD pairs (x_sigma -> x_d) on mismatched data; useless ones in red."""
    ax = fig.subplots()
    traj, sig = result.arrays["teacher_trajectories"], result.arrays["sigmas"]
    ax.plot(sig, traj, color=GREY, lw=0.4, alpha=0.4)
    p = result.arrays["pairs"]
    bad = p["useless"]
    _segments(
        ax,
        p["sigma"][~bad],
        p["x_sigma"][~bad],
        p["x_d"][~bad],
        colors="#2ca02c",
        lw=0.6,
        alpha=0.6,
        label="consistent pair",
    )
    _segments(
        ax, p["sigma"][bad], p["x_sigma"][bad], p["x_d"][bad], colors=RED, lw=0.4, alpha=0.5, label="useless pair"
    )
    lim = float(torch.cat([p["x_d"], p["x_sigma"]]).abs().max()) + 0.5
    ax.set_ylim(-lim, lim)
    ax.legend(fontsize=7, loc="lower left")
    _sigma_axis(ax, result)
    pp = result.numbers["pairs_panel"]
    ax.set_title(
        f"(b) KD pairs at M={pp['mismatch']:g}: {pp['useless_fraction']:.0%} useless "
        f"(red, tau {result.numbers['tau']})",
        fontsize=9,
    )


def panel_c(fig: Figure | SubFigure, result: Toy1dResult) -> None:
    """(c) the DMD one-step student's samples over training against the teacher's."""
    ax = fig.subplots()
    a = result.numbers["config"]["data_point"]
    bins = [-a - 2.0 + 0.05 * i for i in range(int((2 * a + 4.0) / 0.05) + 1)]
    for sign in (-1, 1):
        ax.axvline(sign * a, color=GREY, lw=3, alpha=0.5, label="teacher's data" if sign > 0 else None)
    snaps = result.arrays["dmd"]["snapshots"]
    for k, step in enumerate(sorted(snaps)):
        ax.hist(snaps[step].numpy(), bins=bins, histtype="step", lw=1.0 + 0.4 * k, label=f"DMD step {step}")
    ax.set_xlabel("x")
    ax.set_ylabel("samples")
    ax.legend(fontsize=7)
    d = result.numbers["dmd"]
    ax.set_title(f"(c) DMD one-step student: {d['fraction_near']:.1%} within {result.numbers['near']}", fontsize=9)


def panel_d(fig: Figure | SubFigure, result: Toy1dResult) -> None:
    """(d) DMD guidance draws: where the teacher's answer at x_sigma is not the sample's (red)."""
    ax = fig.subplots()
    d = result.arrays["dmd"]["draws"]
    n = min(SHOWN_DRAWS, len(d["x"]))
    bad = d["useless"][:n]
    sigma, x_sigma, x = d["sigma"][:n], d["x_sigma"][:n], d["x"][:n]
    # Where the teacher takes each useless re-noised point: not back to the sample it came from.
    _segments(ax, sigma[bad], x_sigma[bad], d["teacher_end"][:n][bad], colors=RED, lw=0.4, alpha=0.5)
    ax.scatter(sigma[~bad], x_sigma[~bad], s=3, color=GREY, label="consistent draw")
    ax.scatter(sigma[bad], x_sigma[bad], s=4, color=RED, label="useless draw -> teacher's end")
    ax.scatter(torch.zeros(n), x, s=12, color="k", marker="_", label="student samples")
    _sigma_axis(ax, result)
    ax.legend(fontsize=7, loc="lower left")
    dn = result.numbers["dmd"]
    ax.set_title(
        f"(d) DMD guidance: {dn['guidance_useless_fraction']:.0%} of draws useless, "
        f"{dn['guidance_wrong_side_fraction']:.0%} pull to the other mode",
        fontsize=9,
    )


def panel_e(fig: Figure | SubFigure, result: Toy1dResult) -> None:
    """(e) frequency of useless data points against the mismatch M."""
    ax = fig.subplots()
    rows = result.numbers["useless_frequency"]
    m, f = [r["mismatch"] for r in rows], [r["frequency"] for r in rows]
    ax.plot(m, f, "o-", color=RED)
    for x, y in zip(m, f, strict=True):
        ax.annotate(f"{y:.0%}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mismatch M")
    ax.set_ylabel("frequency of useless points")
    ax.set_title(f"(e) useless points, tau = {result.numbers['tau']}", fontsize=9)


def panel_f(fig: Figure | SubFigure, result: Toy1dResult) -> None:
    """(f) histograms of the students' samples: KD at each M against AccVideo."""
    samples = result.arrays["student_samples"]
    entries = {s["name"]: s for s in result.numbers["students"]}
    names = [n for n in samples if not n.startswith("KD teacher")]
    names = names[1:] + names[:1]  # AccVideo last, under the KD students
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    a = result.numbers["config"]["data_point"]
    bins = [-a - 3.5 + 0.05 * i for i in range(int((2 * a + 7.0) / 0.05) + 1)]
    for ax, name in zip(axes, names, strict=False):
        ax.hist(samples[name].numpy(), bins=bins, color=BLUE if name == "AccVideo" else ORANGE)
        ax.text(
            0.01,
            0.75,
            f"{name}: {entries[name]['fraction_near']:.0%} within {result.numbers['near']}",
            transform=ax.transAxes,
            fontsize=7,
        )
        ax.set_yticks([])
    axes[0].set_title("(f) students' samples (5 steps)", fontsize=9)
    axes[-1].set_xlabel("x")


PANELS: dict[str, Callable[[Figure | SubFigure, Toy1dResult], None]] = {
    "a_teacher": panel_a,
    "b_kd_pairs": panel_b,
    "c_dmd_samples": panel_c,
    "d_dmd_guidance": panel_d,
    "e_useless_frequency": panel_e,
    "f_students": panel_f,
}


def draw_panels(result: Toy1dResult, out: Path) -> list[Path]:
    """Write one PNG per panel and figure2.png with all six; returns their paths."""
    paths = []
    for name, draw in PANELS.items():
        fig = plt.figure(figsize=(5.5, 4.2), layout="constrained")
        draw(fig, result)
        paths.append(_save(fig, out / f"{name}.png", 110))
    fig = plt.figure(figsize=(16.5, 8.4), layout="constrained")
    for sub, draw in zip(fig.subfigures(2, 3).ravel(), PANELS.values(), strict=False):
        draw(sub, result)
    paths.append(_save(fig, out / "figure2.png", 90))
    return paths


def _save(fig, path: Path, dpi: int) -> Path:
    """The figure as PNG, renamed into place (a link at `path` is replaced, never written through), then closed."""
    tmp = temp_name(path)
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(fig)
    return path
