"""Reference numbers of ToyBench: the metrics on real clips and on corrupted real clips (docs/toybench.md).

Run: python -m accvideo.evaluate.reference [--n 256] [--split heldout] [--seed 0] [--classifier DIR] [--json OUT]
(--table OUT prints the table of a JSON it wrote, as docs/toybench.md shows it).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from accvideo.core.files import write_json_atomic
from accvideo.evaluate.classifier import VideoClassifier, classify, load_classifier
from accvideo.evaluate.metrics import (
    alignment_accuracy,
    frechet_distance,
    motion_radius,
    temporal_consistency,
)
from accvideo.world.attributes import item_seed, parse_caption, prompts
from accvideo.world.render import WorldConfig, render_batch

Corruption = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _box_blur(x: torch.Tensor, k: int) -> torch.Tensor:
    """k x k box blur of every frame of (N, F, H, W, 3) clips."""
    n, f, h, w, c = x.shape
    planes = F.pad(x.permute(0, 1, 4, 2, 3).reshape(-1, 1, h, w), (k // 2,) * 4, mode="replicate")
    return F.avg_pool2d(planes, k, 1).reshape(n, f, c, h, w).permute(0, 1, 3, 4, 2)


CORRUPTIONS: dict[str, Corruption] = {
    "real": lambda x, g: x,
    "noise std 0.05": lambda x, g: (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1),
    "noise std 0.15": lambda x, g: (x + 0.15 * torch.randn(x.shape, generator=g)).clamp(0, 1),
    "box blur 3x3": lambda x, g: _box_blur(x, 3),
    "box blur 5x5": lambda x, g: _box_blur(x, 5),
    "frame flicker +-20%": lambda x, g: (x * (0.8 + 0.4 * torch.rand(*x.shape[:2], 1, 1, 1, generator=g))).clamp(0, 1),
    "frozen first frame": lambda x, g: x[:, :1].expand_as(x).contiguous(),
    "uniform noise": lambda x, g: torch.rand(x.shape, generator=g),
}


def reference_rows(model: VideoClassifier, n: int = 256, split: str = "heldout", seed: int = 0) -> list[dict]:
    """Per corrupted version of n real clips: accuracy per attribute, Frechet distance to the real clips, TC."""
    world = WorldConfig(frames=model.cfg.frames, height=model.cfg.height, width=model.cfg.width)
    items = [(parse_caption(c), s) for c, s in prompts(n, split, seed)]
    truth = np.array([a.index() for a, _ in items])
    names = list(model.cfg.classes)
    radius = motion_radius(world.frames, world.height, world.width, world.travel_range[1])
    real = torch.from_numpy(render_batch(items, world))
    _, real_feats = classify(model, real)
    versions = {name: fn(real, torch.Generator().manual_seed(seed)) for name, fn in CORRUPTIONS.items()}
    versions["real, other seeds"] = torch.from_numpy(render_batch([(a, item_seed(s, 1)) for a, s in items], world))
    versions["real, textured background 0.15"] = torch.from_numpy(
        render_batch(items, WorldConfig(frames=world.frames, height=world.height, width=world.width, texture=0.15))
    )
    rows = []
    for name, clips in versions.items():
        preds, feats = classify(model, clips)
        rows.append(
            {
                "clips": name,
                **alignment_accuracy(preds, truth, names),
                "frechet_distance": frechet_distance(feats, real_feats),
                "temporal_consistency": temporal_consistency(clips, radius=radius),
            }
        )
    return rows


def rows_markdown(rows: list[dict], names: list[str]) -> str:
    """The rows as a Markdown table."""
    head = "| clips | " + " | ".join(names) + " | Frechet vs real | temporal consistency |"
    lines = [head, "| --- |" + " ---: |" * (len(names) + 2)]
    for r in rows:
        accs = " | ".join(f"{r[n]:.3f}" for n in names)
        lines.append(f"| {r['clips']} | {accs} | {r['frechet_distance']:.3f} | {r['temporal_consistency']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the reference table for the shipped (or a given) classifier."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--split", default="heldout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier", default=None)
    parser.add_argument("--json", default=None, help="also write the rows and the settings here")
    parser.add_argument("--table", default=None, help="only print the table of a JSON this command wrote")
    args = parser.parse_args(argv)
    if args.table:
        data = json.loads(Path(args.table).read_text())
        print(rows_markdown(data["rows"], data["classes"]))
        return
    model = load_classifier(args.classifier)
    rows = reference_rows(model, args.n, args.split, args.seed)
    print(rows_markdown(rows, list(model.cfg.classes)))
    if args.json:
        settings = {"n": args.n, "split": args.split, "seed": args.seed, "classifier": args.classifier or "shipped"}
        data = {**settings, "classes": list(model.cfg.classes), "rows": rows, "torch": torch.__version__}
        write_json_atomic(args.json, data)


if __name__ == "__main__":
    main()
