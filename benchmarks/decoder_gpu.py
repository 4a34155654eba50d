"""The tiny decoder at real size, random weights (docs/decoder.md): decode time against the VAE, and the whole
student clip (3 steps + --compile + the tiny decoder) against the stock 50-step CFG teacher.

    python benchmarks/decoder_gpu.py --arch wan2.1-t2v-1.3b --size 480x832x81 --compile \
        --json benchmarks/results/decoder_gpu_h200.json                 # on a GPU (goals: <= 0.25 s, >= 25x)
    python benchmarks/decoder_gpu.py --arch wan-tiny --size 64x64x17 --device cpu --teacher-steps 4 \
        --json benchmarks/results/decoder_gpu_cpu_tiny.json             # the same code at a size a CPU runs

1. decode: random latents of the clip's shape, the VAE's decode (untiled) and a random tiny decoder of the default
   architecture (`--decoder tiny`), fastest of --repeats each, with their peak GPU memory and parameters;
2. end to end: `accvideo bench`'s own timing (bench/run.py) of the teacher (its VAE) and the student with
   `--decoder tiny` (and --compile), on the same machine, and the speed-up.
Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from accvideo.bench.configs import build_random
from accvideo.bench.run import BenchConfig, run_bench
from accvideo.bench.timing import synchronize
from accvideo.core.config import parse_size_flag
from accvideo.core.runtime import resolve_device, resolve_dtype
from accvideo.models.decoder import decode_video, open_decoder
from accvideo.models.runtime import RuntimeOptions


def _timed(fn, device: torch.device, repeats: int) -> tuple[float, float | None]:
    """(fastest seconds, peak GPU memory in GiB or None on CPU) of fn() after one warm-up."""
    fn()
    best, peak = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
        if device.type == "cuda":
            peak = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return best, peak


def time_decode(arch: str, size: dict, device: torch.device, dtype: torch.dtype, repeats: int) -> dict:
    """1. decode alone: random latents of the clip's shape, the VAE (untiled) and a random tiny decoder."""
    adapter = build_random(arch, device, dtype)
    adapter.vae.disable_tiling()
    tiny = open_decoder("tiny", adapter, None, allow_random=True)
    z = torch.randn(1, *adapter.latent_shape(size["frames"], size["height"], size["width"]), device=device)
    vae_s, vae_peak = _timed(lambda: adapter.decode(z), device, repeats)
    tiny_s, tiny_peak = _timed(lambda: decode_video(tiny, z), device, repeats)
    vae_params = sum(p.numel() for n, p in adapter.vae.named_parameters() if n.startswith(("decoder", "post_quant")))
    decode = {
        "vae_s": round(vae_s, 4),
        "tiny_s": round(tiny_s, 4),
        "speedup": round(vae_s / tiny_s, 2),
        "vae_peak_gib": vae_peak,
        "tiny_peak_gib": tiny_peak,
        "vae_decoder_parameters": vae_params,
        "tiny_parameters": sum(p.numel() for p in tiny.parameters()),
    }
    return decode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="wan2.1-t2v-1.3b")
    ap.add_argument("--size", default="480x832x81", help="HxWxF")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--student-steps", type=int, default=3)
    ap.add_argument("--teacher-steps", type=int, default=50)
    ap.add_argument("--compile", action="store_true", help="torch.compile the student's transformer")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/decoder_gpu.json"))
    args = ap.parse_args()
    size = parse_size_flag(args.size)
    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)

    decode = time_decode(args.arch, size, device, dtype, args.repeats)
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # 2. the whole clip: bench's own timing, teacher (VAE) against the student with the tiny decoder
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BenchConfig(
            random_weights=True,
            arch=args.arch,
            height=size["height"],
            width=size["width"],
            frames=size["frames"],
            teacher_steps=args.teacher_steps,
            student_steps=args.student_steps,
            runtime=RuntimeOptions(compile=args.compile, decoder="tiny", vae_tiling="off"),
            device=str(device),
            out=str(Path(tmp) / "bench"),
        )
        bench = run_bench(cfg)
    t, s = bench["results"]["teacher"], bench["results"]["student"]
    report = {
        "arch": args.arch,
        "size": args.size,
        "device": bench["device"],
        "dtype": bench["dtype"],
        "torch": torch.__version__,
        "decode": decode,
        "end_to_end": {
            "teacher": {k: t[k] for k in ("steps", "guidance", "transformer_total_s", "vae_decode_s", "end_to_end_s")},
            "student": {k: s[k] for k in ("steps", "guidance", "transformer_total_s", "vae_decode_s", "end_to_end_s")},
            "compile": args.compile,
            "speedup": round(bench["speedup_end_to_end"], 2),
        },
        "goals": {"tiny_decode_s_at_most": 0.25, "end_to_end_speedup_at_least": 25},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    e = report["end_to_end"]
    print(
        "\n".join(
            [
                f"{args.arch} {args.size}, {report['device']}, {report['dtype']}",
                "",
                "| | teacher VAE | tiny decoder |",
                "|---|---:|---:|",
                f"| decode (s) | {decode['vae_s']:.4f} | {decode['tiny_s']:.4f} |",
                f"| peak memory (GiB) | {decode['vae_peak_gib']} | {decode['tiny_peak_gib']} |",
                f"| decoder parameters | {decode['vae_decoder_parameters']:,} | {decode['tiny_parameters']:,} |",
                "",
                f"Whole clip: teacher {e['teacher']['steps']} steps x CFG {e['teacher']['guidance']:g} + VAE "
                f"{e['teacher']['end_to_end_s']:.3f} s; student {e['student']['steps']} steps"
                f"{' + compile' if args.compile else ''} + tiny decoder {e['student']['end_to_end_s']:.3f} s: "
                f"{e['speedup']:.1f}x.",
                f"wrote {args.json}",
            ]
        )
    )


if __name__ == "__main__":
    main()
