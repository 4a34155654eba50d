"""What makes the tiny decoder converge within a CPU budget: variants of `accvideo decoder distill`, held-out PSNR
against iterations and seconds (docs/decoder.md, "How the defaults were chosen").

Every variant is the real command with its own settings, for the same number of iterations (the cosine schedule
spans them), from the same seed, on the same cached VAE targets (linked from --targets, a finished decoder run on
the same SynVid, so no variant pays for them); the held-out PSNR is the run's own (its last `holdout` SynVid items,
never trained on), logged every --every iterations.

    python benchmarks/decoder_variants.py --data runs/demo/synvid --targets runs/dec_final \
        --only 0,2,4,6 --threads 1 &     # two at a time on 2 cores
    python benchmarks/decoder_variants.py --data runs/demo/synvid --targets runs/dec_final \
        --only 1,3,5 --threads 1; wait
    python benchmarks/decoder_variants.py --runs runs/decoder-variants --json benchmarks/results/decoder_variants.json
    python benchmarks/decoder_variants.py --table benchmarks/results/decoder_variants.json

A finished variant is not run again; the --json step collects every finished one.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from accvideo.core.files import write_json_atomic
from accvideo.decoder import DecoderDistillConfig
from accvideo.distill.plots import read_losses

# stage_depth 1, the plain L1 and lr 2e-3: these variants chose the blocks and the batch; stage_depth 2, edge_weight
# and lr 3e-3 came after (docs/decoder.md); the weights' channels-last layout too (its times are those of NCHW)
FIRST = {
    "activation": "relu",
    "post_activation": True,
    "frame_pairs": 0,
    "batch": 4,
    "stage_depth": 1,
    "edge_weight": 0.0,
    "lr": 2e-3,
}
SILU = {**FIRST, "activation": "silu", "post_activation": False}
VARIANTS = {
    "first release: ReLU, ReLU after the sum, 4 whole clips": FIRST,
    "ReLU, nothing after the sum": {**FIRST, "post_activation": False},
    "SiLU, SiLU after the sum": {**FIRST, "activation": "silu"},
    "SiLU, nothing after the sum": SILU,
    "first release + 16 clips x 2 frame pairs": {**FIRST, "frame_pairs": 2, "batch": 16},
    "SiLU + 16 clips x 2 frame pairs (the default's blocks and batch)": {**SILU, "frame_pairs": 2, "batch": 16},
    "SiLU + 8 clips x 4 frame pairs": {**SILU, "frame_pairs": 4, "batch": 8},
}


def folder(runs: Path, i: int) -> Path:
    return runs / f"v{i}"


def run_variant(i: int, args) -> None:
    from accvideo.core.outputs import claim_folder
    from accvideo.decoder import distill_decoder
    from accvideo.decoder.targets import FOLDER
    from accvideo.decoder.train import COMMAND

    out = folder(Path(args.runs), i)
    if (out / "summary.json").is_file():
        return
    claim_folder(out, COMMAND)
    targets = out / FOLDER
    if not targets.is_dir():  # the cached VAE decodes, hard-linked (read only by every variant)
        targets.mkdir(parents=True)
        for chunk in sorted((Path(args.targets) / FOLDER).glob("chunk-*.safetensors")):
            os.link(chunk, targets / chunk.name)
    settings = dict(teacher=args.teacher, data=args.data, out=str(out), iterations=args.iterations)
    cfg = DecoderDistillConfig(**settings, checkpoint_every=args.every, threads=args.threads, **VARIANTS_LIST[i][1])
    distill_decoder(cfg, progress=False)


def collect(runs: Path) -> dict:
    rows = []
    for i, (name, settings) in enumerate(VARIANTS_LIST):
        out = folder(runs, i)
        if not (out / "summary.json").is_file():
            continue
        summary = json.loads((out / "summary.json").read_text())
        records = read_losses(out / "losses.jsonl")
        curve = [{"iteration": r["iteration"], "val_psnr": r["val_psnr"]} for r in records if "val_psnr" in r]
        seconds = {r["iteration"]: r["seconds"] for r in records if "seconds" in r}
        for point in curve:
            point["seconds"] = seconds.get(point["iteration"])
        rows.append({"name": name, "settings": settings, "curve": curve, "summary": summary})
    return {"variants": rows}


def table(result: dict) -> str:
    iters = sorted({p["iteration"] for row in result["variants"] for p in row["curve"]})
    head = "| variant | " + " | ".join(f"{i} it" for i in iters) + " | seconds per iteration |"
    lines = [head, "|---|" + "---:|" * (len(iters) + 1)]
    for row in result["variants"]:
        at = {p["iteration"]: p["val_psnr"] for p in row["curve"]}
        s = row["summary"]
        per = s["train_seconds"] / max(1, s["iterations_this_run"])
        cells = " | ".join(f"{at[i]:.1f}" if i in at else "-" for i in iters)
        lines.append(f"| {row['name']} | {cells} | {per:.3f} |")
    threads = {row["summary"]["threads"] for row in result["variants"]}
    lines.append("")
    lines.append(
        f"Held-out PSNR (dB) against the VAE's frames on the run's {DecoderDistillConfig().holdout} held-out SynVid "
        "items; "
        f"{', '.join(map(str, sorted(threads)))} thread(s) per run."
    )
    return "\n".join(lines)


VARIANTS_LIST = list(VARIANTS.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="the SynVid every variant trains on")
    ap.add_argument("--teacher", default="builtin")
    ap.add_argument("--targets", help="a finished decoder run on --data whose targets/ are reused")
    ap.add_argument("--runs", default="runs/decoder-variants")
    ap.add_argument("--only", help="comma-separated variant numbers to run (default: none, only collect)")
    ap.add_argument("--iterations", type=int, default=800)
    ap.add_argument("--every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the finished variants here")
    ap.add_argument("--table", help="print the Markdown table of this JSON")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return
    if args.only:
        if not (args.data and args.targets):
            ap.error("--only needs --data and --targets")
        for i in (int(x) for x in args.only.split(",")):
            print(f"variant {i}: {VARIANTS_LIST[i][0]}", flush=True)
            run_variant(i, args)
    if args.json:
        result = collect(Path(args.runs))
        result["command"] = "python benchmarks/decoder_variants.py " + " ".join(
            f"--{k} {v}" for k, v in (("iterations", args.iterations), ("every", args.every))
        )
        write_json_atomic(Path(args.json), result)
        print(table(result))


if __name__ == "__main__":
    main()
