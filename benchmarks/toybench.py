"""ToyBench comparison: several (model, steps, guidance) samplers on the same held-out prompts and seeds.

    python benchmarks/toybench.py --n 256 --run teacher-50=builtin:50:5 --run teacher-5=builtin:5:5 \
        --json benchmarks/results/toybench.json

Each --run is NAME=MODEL[:STEPS[:GUIDANCE[:SHIFT]]]; MODEL is 'builtin', a diffusers folder or a distill run
(a student samples on its own key sigmas without CFG unless STEPS/GUIDANCE are given; an empty field keeps the
default, e.g. student-5=runs/s5). Prints a Markdown table (accuracy per attribute, Frechet distance, temporal
consistency, seconds) and writes JSON; `--draws N` adds 95% bootstrap intervals over clips (evaluate/intervals.py)
to every row, and each row's paired difference from the first row. `--table JSON...` prints saved results (of the
same pairs) as one table, the docs' tables.

An image-to-video model (e.g. `accvideo teacher train image=true init=builtin`) runs in ToyBench's image-to-video
mode: each clip starts from the world's first frame of its prompt and seed (evaluate/generate.py `first_frames`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from accvideo.core.runtime import resolve_device
from accvideo.evaluate.classifier import load_classifier
from accvideo.evaluate.generate import generate_videos
from accvideo.evaluate.intervals import compare, summarise
from accvideo.evaluate.run import evaluate_videos
from accvideo.models.open import open_model
from accvideo.world import prompts


def parse_run(text: str) -> dict:
    name, _, spec = text.partition("=")
    parts = spec.split(":")
    if not name or not parts[0] or len(parts) > 4:
        raise SystemExit(f"--run {text!r}: expected NAME=MODEL[:STEPS[:GUIDANCE[:SHIFT]]]")
    parts += [""] * (4 - len(parts))
    return {
        "name": name,
        "model": parts[0],
        "steps": int(parts[1]) if parts[1] else None,
        "guidance": float(parts[2]) if parts[2] else None,
        "shift": float(parts[3]) if parts[3] else None,
    }


def markdown(rows: list[dict]) -> str:
    """The comparison table: one line a run (with its 95% intervals when drawn), then the reference clips'."""

    def ci(r: dict, name: str, fmt: str) -> str:  # " [lo, hi]" when intervals were drawn
        b = r.get("intervals", {}).get(name)
        return f" [{b['lo']:{fmt}}, {b['hi']:{fmt}}]" if b else ""

    attrs = [k for k in rows[0]["accuracy"] if k not in ("mean", "joint")]
    head = ["run", "steps", "guidance", *attrs, "mean acc", "joint acc", "Frechet", "temporal", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        a = r["accuracy"]
        lines.append(
            "| "
            + " | ".join(
                [
                    r["name"],
                    str(r["steps"]),
                    f"{r['guidance']:g}",
                    *[f"{a[k]:.3f}" for k in attrs],
                    f"{a['mean']:.3f}" + ci(r, "accuracy", ".3f"),
                    f"{a['joint']:.3f}",
                    f"{r['frechet_distance']:.3f}" + ci(r, "frechet_distance", ".1f"),
                    f"{r['temporal_consistency']:.3f}",
                    f"{r['seconds']:.0f}",
                ]
            )
            + " |"
        )
    ref = rows[0]["reference"]
    if ref:
        lines.append(
            "| real clips (reference) | - | - | "
            + " | ".join(f"{ref['accuracy'][k]:.3f}" for k in attrs)
            + f" | {ref['accuracy']['mean']:.3f} | {ref['accuracy']['joint']:.3f} | "
            f"{ref['frechet_distance']:.3f} | {ref['temporal_consistency']:.3f} | - |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", help="NAME=MODEL[:STEPS[:GUIDANCE[:SHIFT]]]")
    ap.add_argument("--n", type=int, default=256, help="held-out prompt and seed pairs")
    ap.add_argument("--split", default="heldout")
    ap.add_argument("--seed", type=int, default=0, help="seed of the prompt list")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (sampling runs in float32 either way)")
    ap.add_argument("--classifier", type=Path, default=None, help="classifier folder [the shipped one]")
    ap.add_argument("--draws", type=int, default=0, help="bootstrap draws for 95%% intervals over clips [0: none]")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/toybench.json"))
    ap.add_argument("--table", nargs="+", type=Path, help="print the rows of saved JSONs as one table and stop")
    args = ap.parse_args()
    if args.table:  # one table of runs scored on the same pairs
        saved = [json.loads(path.read_text()) for path in args.table]
        if len({(r["n"], r["split"], r["seed"]) for r in saved}) > 1:
            raise SystemExit("--table: these JSONs score other prompt and seed pairs (n, split, seed differ)")
        print(markdown([r for result in saved for r in result["runs"]]))
        return
    if not args.run:
        ap.error("give --run NAME=MODEL... (or --table JSON...)")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    clf = load_classifier(args.classifier)
    pairs = prompts(args.n, args.split, args.seed)
    rows, models, scores = [], {}, []
    for run in map(parse_run, args.run):
        if run["model"] not in models:
            models[run["model"]] = open_model(run["model"], device=device)
        opened = models[run["model"]]
        plan = opened.plan(run["steps"], run["guidance"], run["shift"])
        t0 = time.perf_counter()
        videos = generate_videos(
            opened.adapter,
            pairs,
            plan,
            frames=clf.cfg.frames,
            height=clf.cfg.height,
            width=clf.cfg.width,
            batch_size=args.batch,
        )
        seconds = time.perf_counter() - t0
        m = evaluate_videos(videos, pairs, classifier=clf, per_clip=args.draws > 0)
        rows.append(
            {
                **run,
                "steps": plan.steps,
                "guidance": plan.guidance,
                "shift": run["shift"] or opened.adapter.default_shift,
                "sigmas": [round(float(s), 6) for s in plan.sigmas],
                "seconds": round(seconds, 1),
                "accuracy": m["accuracy"],
                "frechet_distance": m["frechet_distance"],
                "temporal_consistency": m["temporal_consistency"],
                "reference": m.get("reference"),
                "image_to_video": bool(opened.adapter.image_conditioned),
            }
        )
        if args.draws:
            scores.append(m["per_clip"])
            rows[-1]["intervals"] = summarise([scores[-1]], draws=args.draws)
            if len(scores) > 1:
                rows[-1]["minus_first"] = compare([scores[-1]], [scores[0]], draws=args.draws)
        print(f"{run['name']}: mean accuracy {m['accuracy']['mean']:.3f}, FD {m['frechet_distance']:.3f}", flush=True)

    table = markdown(rows)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"n": args.n, "split": args.split, "seed": args.seed, "device": str(device), "runs": rows, "table": table},
            indent=2,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
