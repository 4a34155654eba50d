"""The demo's report folder: index.md, metrics.json, a side-by-side grid video, a frame-grid PNG, loss plots."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

GAP = 2  # pixels between cells
SCALE = 2  # nearest-neighbour upscale of the 64x64 clips, so the grid is watchable


def grid_video(columns: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
    """(F, H', W', 3) uint8: one column per sampler (clips (N, F, H, W, 3)), one row per prompt, labels on top."""
    from PIL import Image, ImageDraw

    n, f, h, w, _ = columns[0].shape
    h2, w2 = h * SCALE, w * SCALE
    header = 14
    height = header + n * h2 + (n + 1) * GAP
    width = len(columns) * w2 + (len(columns) + 1) * GAP
    frame = np.full((f, height, width, 3), 255, np.uint8)
    for c, clips in enumerate(columns):
        x = GAP + c * (w2 + GAP)
        for r in range(n):
            y = header + GAP + r * (h2 + GAP)
            frame[:, y : y + h2, x : x + w2] = clips[r].repeat(SCALE, 1).repeat(SCALE, 2)
    head = Image.new("RGB", (width, header), "white")
    draw = ImageDraw.Draw(head)
    for c, label in enumerate(labels):
        draw.text((GAP + c * (w2 + GAP) + 2, 1), label, fill="black")
    frame[:, :header] = np.asarray(head)[None]
    return frame


def frame_grid_png(
    path: Path,
    columns: Sequence[np.ndarray],
    labels: Sequence[str],
    prompts: Sequence[str],
    frames: Sequence[int] = (0, 4, 8, 12, 16),
) -> Path:
    """A still for the README: for each prompt, one row per sampler, a few frames side by side."""
    from accvideo.core.plotting import pyplot

    plt = pyplot()

    n = len(prompts)
    frames = [i for i in frames if i < columns[0].shape[1]]
    fig = plt.figure(figsize=(1.2 * len(frames) + 1.4, (1.2 * len(columns) + 0.4) * n), layout="constrained")
    for p, sub in enumerate(np.atleast_1d(fig.subfigures(n, 1))):
        sub.suptitle(prompts[p], fontsize=9)
        axes = sub.subplots(len(columns), len(frames), squeeze=False)
        for c, (clips, label) in enumerate(zip(columns, labels, strict=True)):
            for j, i in enumerate(frames):
                ax = axes[c][j]
                ax.imshow(clips[p, i], interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if c == len(columns) - 1:
                    ax.set_xlabel(f"frame {i}", fontsize=7)
            axes[c][0].set_ylabel(label, fontsize=7)
    tmp = path.with_name(f".{path.name}.part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def comparison_table(results: dict[str, dict]) -> str:
    """Markdown: one row per sampler, the ToyBench metrics and the sampling time, the real reference last."""
    first = next(iter(results.values()))
    attrs = [k for k in first["accuracy"] if k not in ("mean", "joint")]
    head = [
        "sampler",
        "steps",
        "guidance",
        *[f"{a} acc" for a in attrs],
        "mean acc",
        "Frechet",
        "temporal",
        "sampling s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results.values():
        a = r["accuracy"]
        fd = "-" if r["frechet_distance"] is None else f"{r['frechet_distance']:.3f}"
        lines.append(
            "| "
            + " | ".join(
                [
                    r["label"],
                    str(r["steps"]),
                    f"{r['guidance']:g}",
                    *[f"{a[k]:.3f}" for k in attrs],
                    f"{a['mean']:.3f}",
                    fd,
                    f"{r['temporal_consistency']:.4f}",
                    f"{r['seconds_sampling']:.1f}",
                ]
            )
            + " |"
        )
    ref = first.get("reference")
    if ref:
        fd = "-" if ref["frechet_distance"] is None else f"{ref['frechet_distance']:.3f}"
        lines.append(
            "| real clips (reference) | - | - | "
            + " | ".join(f"{ref['accuracy'][k]:.3f}" for k in attrs)
            + f" | {ref['accuracy']['mean']:.3f} | {fd} | {ref['temporal_consistency']:.4f} | - |"
        )
    return "\n".join(lines)


def copy_plot(src: Path, dst: Path) -> Path | None:
    """Copy a PNG into the report if the stage made one."""
    if not Path(src).is_file():
        return None
    shutil.copyfile(src, dst)
    return dst
