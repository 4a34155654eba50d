"""The tiny decoder's memory layout: NCHW against channels-last weights, side by side in one process.

    python benchmarks/decoder_layout.py --threads 1 2 --json benchmarks/results/decoder_layout.json

Two decoders of the default architecture for the built-in VAE (8 latent channels, 4x time, 8x space) hold the same
weights, one converted to NCHW and one kept channels-last (models/decoder.py makes every TinyDecoder channels-last).
Per thread count, interleaved repeats of: the decoder's part of a training step of `accvideo decoder distill`
(16 clips of 5 latent frames at 8x8, 2 frame pairs each; forward, a mean-square loss, backward, an AdamW step) and
one decode of a 17x64x64 clip at batch 1 and at batch 16. Reported: the median seconds of each, their ratio, and the
largest difference between the two layouts' decodes. Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from decoder import write_report  # benchmarks/decoder.py

from accvideo.models.decoder import DecoderSpec, TinyDecoder


def _step(decoder: TinyDecoder, opt: torch.optim.Optimizer, z: torch.Tensor, frames: torch.Tensor) -> float:
    t = time.perf_counter()
    out, _, _ = decoder(z, None, None, frames)
    loss = out.square().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t


@torch.no_grad()
def _decode(decoder: TinyDecoder, z: torch.Tensor) -> float:
    t = time.perf_counter()
    decoder.decode(z)
    return time.perf_counter() - t


def measure(threads: int, repeats: int, seed: int = 0) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    spec = DecoderSpec(8, 4, 8)
    layouts = {"channels_last": TinyDecoder(spec)}
    layouts["nchw"] = TinyDecoder(spec).to(memory_format=torch.contiguous_format)
    layouts["nchw"].load_state_dict(layouts["channels_last"].state_dict())
    opts = {k: torch.optim.AdamW(m.parameters(), 1e-3) for k, m in layouts.items()}
    z = torch.randn(16, 8, 5, 8, 8)
    start = torch.stack([torch.randperm(16)[:2] for _ in range(16)])  # 2 pairs of consecutive frames per clip
    frames = torch.stack([start, start + 1], 2).flatten(1)
    with torch.no_grad():
        diff = (layouts["nchw"].decode(z[:4]) - layouts["channels_last"].decode(z[:4])).abs().max().item()
    times = {k: {"train_step": [], "decode_batch_1": [], "decode_batch_16": []} for k in layouts}
    for _ in range(repeats):
        for k, m in layouts.items():
            times[k]["train_step"].append(_step(m, opts[k], z, frames))
            times[k]["decode_batch_1"].append(_decode(m, z[:1]))
            times[k]["decode_batch_16"].append(_decode(m, z) / len(z))
    skip = min(2, repeats - 1)  # warm-up
    med = {k: {n: statistics.median(v[skip:]) for n, v in t.items()} for k, t in times.items()}
    return {
        "threads": threads,
        "median_s": {k: {n: round(x, 5) for n, x in v.items()} for k, v in med.items()},
        "nchw_over_channels_last": {n: round(med["nchw"][n] / med["channels_last"][n], 3) for n in med["nchw"]},
        "max_abs_decode_difference": diff,
    }


def markdown(r: dict) -> str:
    lines = [
        f"Tiny decoder (default architecture, built-in VAE geometry); {r['device']}; median of {r['repeats']} "
        "interleaved repeats",
        "",
        "| threads | measure | NCHW (ms) | channels-last (ms) | NCHW / channels-last |",
        "|---:|---|---:|---:|---:|",
    ]
    for row in r["rows"]:
        m = row["median_s"]
        for name in ("train_step", "decode_batch_1", "decode_batch_16"):
            label = {
                "train_step": "training step",
                "decode_batch_1": "decode per clip, batch 1",
                "decode_batch_16": "decode per clip, batch 16",
            }[name]
            lines.append(
                f"| {row['threads']} | {label} | {1000 * m['nchw'][name]:.1f} | "
                f"{1000 * m['channels_last'][name]:.1f} | {row['nchw_over_channels_last'][name]:.2f} |"
            )
    worst = max(row["max_abs_decode_difference"] for row in r["rows"])
    lines += ["", f"Largest difference between the two layouts' decodes (frames in [-1, 1]): {worst:.1e}"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/decoder_layout.json"))
    ap.add_argument("--table", type=Path, help="only print the table of a JSON this script wrote")
    args = ap.parse_args()
    if args.table is not None:
        print(markdown(json.loads(args.table.read_text())))
        return
    report = {
        "device": f"CPU ({platform.machine()})",
        "torch": torch.__version__,
        "repeats": args.repeats,
        "rows": [measure(t, args.repeats) for t in args.threads],
    }
    write_report(report, args.json, markdown)


if __name__ == "__main__":
    main()
