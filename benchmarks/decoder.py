"""The tiny decoder against the teacher's VAE, side by side in one run, on held-out prompts (docs/decoder.md).

    python benchmarks/decoder.py --student runs/data/distill --decoder runs/dec --n 256 --threads 1 \
        --json benchmarks/results/decoder.json
    python benchmarks/decoder.py --table benchmarks/results/decoder.json     # docs/decoder.md's table, from the JSON

The student samples the latents of N held-out (test-split) prompt and seed pairs once (its key sigmas, no CFG;
no noise seed is a training seed); the VAE and the tiny decoder each decode them. Reported: PSNR and SSIM of the
tiny decoder's frames against the VAE's; ToyBench (attribute accuracy, Frechet distance, temporal consistency)
of both sets of clips; decode time per clip (fastest of --repeats, at batch 1 and at --batch); parameters; the
peak memory each decode adds (measured in a fresh process each); and the decoder run's training cost
(summary.json). Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import threading
import time
from pathlib import Path

import numpy as np
import torch

from accvideo.core.sampling import sample_latents
from accvideo.decoder.losses import psnr, ssim
from accvideo.evaluate.classifier import load_classifier
from accvideo.evaluate.run import evaluate_videos
from accvideo.models.decoder import decode_video, find_decoder, load_decoder_for
from accvideo.models.open import open_model
from accvideo.world import prompts


def _decoders(student: str, decoder: str):
    opened = open_model(student, device="cpu")
    tiny, _ = load_decoder_for(decoder, opened.model_dir)
    vae = opened.adapter.decode
    return opened, {"vae": vae, "tiny": lambda z: decode_video(tiny, z)}, tiny


def _time(fn, z: torch.Tensor, repeats: int) -> float:
    fn(z)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(z)
        best = min(best, time.perf_counter() - t0)
    return best / len(z)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_child(args: tuple, queue) -> None:
    """In a fresh process: how far the resident set rises above its level before a decode of a batch (MB),
    sampled every half millisecond (Linux)."""
    student, decoder, name, shape, threads = args
    torch.set_num_threads(threads)
    _, fns, _ = _decoders(student, decoder)
    z = torch.randn(shape)
    fns[name](z[:1, :, :1])  # load lazily-initialised kernels before the baseline
    base, peak, done = _rss_mb(), [0.0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    fns[name](z)
    done.set()
    watcher.join()
    queue.put(max(peak[0], _rss_mb()) - base)


def peak_mb(student: str, decoder: str, name: str, shape: tuple, threads: int) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_peak_child, args=((student, decoder, name, shape, threads), queue))
    p.start()
    value = queue.get()
    p.join()
    return round(value, 1)


def _config(run: Path) -> dict | None:
    """The decoder run's settings (its config.yaml), for the comparison rows."""
    import yaml

    path = run / "config.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", help="a distill run (or 'builtin' for the teacher)")
    ap.add_argument("--decoder", help="a decoder distill run or its decoder/ folder")
    ap.add_argument("--table", type=Path, help="only print the table of a JSON this script wrote")
    ap.add_argument("--compare", type=Path, nargs="+", help="only print one row per JSON (decoder settings compared)")
    ap.add_argument("--n", type=int, default=256, help="held-out prompt and seed pairs")
    ap.add_argument("--seed", type=int, default=0, help="seed of the prompt list")
    ap.add_argument("--split", choices=("test", "val"), default="test", help="val: where decoder settings are chosen")
    ap.add_argument("--quick", action="store_true", help="fidelity and ToyBench only (no timing, no memory)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/decoder.json"))
    args = ap.parse_args()
    if args.table is not None:
        print(markdown(json.loads(args.table.read_text())))
        return
    if args.compare:
        print(compare_rows([json.loads(p.read_text()) for p in args.compare]))
        return
    if not (args.student and args.decoder):
        ap.error("--student and --decoder are required (or --table JSON)")
    torch.set_num_threads(args.threads)

    opened, fns, tiny = _decoders(args.student, args.decoder)
    clf = load_classifier(None)
    frames, height, width = clf.cfg.frames, clf.cfg.height, clf.cfg.width
    pairs = prompts(args.n, args.split, args.seed)  # held-out streams: never a training seed
    plan = opened.plan()
    shape = opened.adapter.latent_shape(frames, height, width)
    latents = []
    for i in range(0, len(pairs), args.batch):
        chunk = pairs[i : i + args.batch]
        out = sample_latents(opened.adapter, [p for p, _ in chunk], [s for _, s in chunk], shape, plan)
        latents.append(out.latents.float().cpu())
    z = torch.cat(latents)

    videos, seconds = {}, {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        videos[name] = torch.cat([fn(z[i : i + args.batch]) for i in range(0, len(z), args.batch)])
        seconds[name] = round(time.perf_counter() - t0, 2)
    p, s = psnr(videos["tiny"], videos["vae"]), ssim(videos["tiny"], videos["vae"])

    def q(v: torch.Tensor) -> np.ndarray:  # 8 bits, as every saved clip (and ToyBench's folders) holds them
        return (v.numpy() * 255.0 + 0.5).astype(np.uint8)

    toy = {name: evaluate_videos(q(v), pairs, classifier=clf) for name, v in videos.items()}
    timing, peak = {}, {}
    if not args.quick:
        timing = {
            name: {
                "per_clip_s_batch_1": round(_time(fn, z[:1], args.repeats), 5),
                f"per_clip_s_batch_{args.batch}": round(_time(fn, z[: args.batch], args.repeats), 5),
            }
            for name, fn in fns.items()
        }
        shape = tuple(z[: args.batch].shape)
        peak = {name: peak_mb(args.student, args.decoder, name, shape, args.threads) for name in fns}
    vae = opened.adapter.vae
    params = {
        "vae_decoder": sum(p.numel() for n, p in vae.named_parameters() if not n.startswith(("encoder", "quant")))
    }
    params["tiny"] = sum(p.numel() for p in tiny.parameters())
    run = find_decoder(args.decoder)
    summary_path = run.parent / "summary.json"
    training = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    report = {
        "student": args.student,
        "decoder": str(run),
        "n": len(pairs),
        "split": f"held-out ({args.split} seeds)",
        "size": [frames, height, width],
        "device": f"CPU ({platform.machine()}, {args.threads} thread(s))",
        "torch": torch.__version__,
        "psnr_db": {
            "mean": round(p.mean().item(), 3),
            "min": round(p.min().item(), 3),
            "std": round(p.std().item(), 3),
        },
        "ssim": {"mean": round(s.mean().item(), 4), "min": round(s.min().item(), 4)},
        "toybench": {
            name: {
                "accuracy": t["accuracy"],
                "frechet_distance": t["frechet_distance"],
                "temporal_consistency": t["temporal_consistency"],
            }
            for name, t in toy.items()
        },
        "decode_seconds_all_clips": seconds,
        "timing": timing,
        "speedup": {k: round(timing["vae"][k] / timing["tiny"][k], 2) for k in timing.get("vae", {})},
        "peak_memory_added_mb": peak,
        "parameters": params,
        "training": training,
        "config": _config(run.parent),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    print(f"wrote {args.json}")


def compare_rows(reports: list[dict]) -> str:
    """One row per report: the decoder's settings that differ from the defaults, fidelity and ToyBench."""
    from accvideo.decoder import DecoderDistillConfig

    default = DecoderDistillConfig()
    v = reports[0]["toybench"]["vae"]
    lines = [
        f"{reports[0]['n']} {reports[0]['split']} clips from {reports[0]['student']}; the VAE's own clips: "
        f"shape accuracy {v['accuracy']['shape']:.3f}, Frechet distance {v['frechet_distance']:.1f}, temporal "
        f"consistency {v['temporal_consistency']:.4f}",
        "",
        "| decoder settings | PSNR (dB) | SSIM | mean acc | shape | Frechet | temporal |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        config = r.get("config") or {}
        changed = [f"{k}={x}" for k, x in config.items() if k in SETTINGS and getattr(default, k) != x]
        t = r["toybench"]["tiny"]
        lines.append(
            f"| {' '.join(changed) or 'the defaults'} | {r['psnr_db']['mean']:.2f} | {r['ssim']['mean']:.4f} | "
            f"{t['accuracy']['mean']:.3f} | {t['accuracy']['shape']:.3f} | {t['frechet_distance']:.1f} | "
            f"{t['temporal_consistency']:.4f} |"
        )
    return "\n".join(lines)


# the decoder settings a comparison row names when they differ from the defaults
SETTINGS = (
    "width",
    "depth",
    "stage_depth",
    "min_width",
    "activation",
    "post_activation",
    "frame_pairs",
    "batch",
    "iterations",
    "lr",
    "edge_weight",
    "gradient_weight",
    "feature_weight",
    "adv_weight",
    "adv_start",
)


def markdown(r: dict) -> str:
    """The side-by-side table of a report (docs/decoder.md quotes it)."""
    t, v = r["toybench"]["tiny"], r["toybench"]["vae"]
    rows = [
        ("PSNR vs the VAE's frames (dB), mean / min", "-", f"{r['psnr_db']['mean']:.2f} / {r['psnr_db']['min']:.2f}"),
        ("SSIM vs the VAE's frames, mean / min", "-", f"{r['ssim']['mean']:.4f} / {r['ssim']['min']:.4f}"),
        ("ToyBench mean accuracy", f"{v['accuracy']['mean']:.3f}", f"{t['accuracy']['mean']:.3f}"),
        ("ToyBench shape accuracy", f"{v['accuracy']['shape']:.3f}", f"{t['accuracy']['shape']:.3f}"),
        ("ToyBench joint accuracy", f"{v['accuracy']['joint']:.3f}", f"{t['accuracy']['joint']:.3f}"),
        ("Frechet distance", f"{v['frechet_distance']:.3f}", f"{t['frechet_distance']:.3f}"),
        ("temporal consistency", f"{v['temporal_consistency']:.4f}", f"{t['temporal_consistency']:.4f}"),
    ]
    if r["timing"]:
        ms = {name: {k: f"{1000 * x:.1f}" for k, x in r["timing"][name].items()} for name in ("vae", "tiny")}
        for k in r["timing"]["vae"]:
            label = k.replace("per_clip_s_", "").replace("_", " ")
            rows.append((f"decode per clip, {label} (ms)", ms["vae"][k], ms["tiny"][k]))
        peak = r["peak_memory_added_mb"]
        rows.append(("peak memory a batch decode adds (MB)", f"{peak['vae']:.0f}", f"{peak['tiny']:.0f}"))
    rows.append(("decoder parameters", f"{r['parameters']['vae_decoder']:,}", f"{r['parameters']['tiny']:,}"))
    lines = [
        f"{r['n']} held-out clips of {r['size'][0]}x{r['size'][1]}x{r['size'][2]} from {r['student']}; {r['device']}",
        "",
        "| | teacher VAE | tiny decoder |",
        "|---|---:|---:|",
        *[f"| {a} | {x} | {y} |" for a, x, y in rows],
        "",
    ]
    if r["speedup"]:
        speed = ", ".join(f"{k.replace('per_clip_s_', '')} {x:.1f}x" for k, x in r["speedup"].items())
        lines.append(f"Speed-up per clip: {speed}")
    if r["training"]:
        tr = r["training"]
        lines.append(
            f"Training: {tr['iterations']} iterations, {tr['seconds'] / 60:.1f} min wall "
            f"({tr['targets_seconds']:.0f} s of VAE targets), {tr.get('cpu_seconds', 0) / 60:.1f} min of CPU, "
            f"{tr['threads']} thread(s)."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
