"""The tiny decoder against the teacher's VAE, side by side in one run, on held-out prompts (docs/decoder.md).

    python benchmarks/decoder.py --student runs/data/distill --decoder runs/dec runs/dec-s1 runs/dec-s2 --n 256 \
        --threads 1 --json benchmarks/results/decoder.json
    python benchmarks/decoder.py --table benchmarks/results/decoder.json     # docs/decoder.md's table, from the JSON
    python benchmarks/decoder.py --student S --decoder A A-s1 A-s2 --against B B-s1 B-s2 --split val --quick --json J
                                          # two decoder settings, 3 training seeds each, paired on the same clips

The student samples the latents of N held-out (test-split) prompt and seed pairs once (its key sigmas, no CFG;
no noise seed is a training seed); the VAE and the tiny decoder each decode them. Reported: PSNR and SSIM of the
tiny decoder's frames against the VAE's; ToyBench (attribute accuracy, Frechet distance, temporal consistency) of
both sets of clips, with 95% bootstrap intervals over clips (paired for the differences) and, given several
--decoder runs (one per training seed), the mean and spread over seeds (evaluate/intervals.py); decode time per clip
(fastest of --repeats, at batch 1 and at --batch); parameters; the peak memory each decode adds (the median of 3
fresh processes, from the kernel's high-water mark); and the decoder runs' training cost (summary.json). Timing and
memory use the first --decoder.
Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from accvideo.core.sampling import sample_latents
from accvideo.decoder.losses import psnr, ssim
from accvideo.evaluate.classifier import load_classifier
from accvideo.evaluate.intervals import compare, summarise
from accvideo.evaluate.run import evaluate_videos
from accvideo.models.decoder import decode_video, find_decoder, load_decoder_for
from accvideo.models.open import open_model
from accvideo.world import prompts


def _decoders(student: str, decoder: str):
    opened = open_model(student, device="cpu")
    tiny, _ = load_decoder_for(decoder, opened.model_dir)
    vae = opened.adapter.decode
    return opened, {"vae": vae, "tiny": lambda z: decode_video(tiny, z)}, tiny


def held_out_latents(opened, pairs: list, size: tuple[int, int, int], batch: int) -> torch.Tensor:
    """The model's final latents (N, C, F', H', W') for (prompt, seed) pairs, on its own plan, `batch` at a time."""
    plan, shape = opened.plan(), opened.adapter.latent_shape(*size)
    latents = []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        out = sample_latents(opened.adapter, [p for p, _ in chunk], [s for _, s in chunk], shape, plan)
        latents.append(out.latents.float().cpu())
    return torch.cat(latents)


@torch.no_grad()
def decode_in_batches(fn, z: torch.Tensor, batch: int) -> torch.Tensor:
    """Videos (N, F, H, W, 3) of latents z (N, ...) decoded by `fn`, `batch` at a time."""
    return torch.cat([fn(z[i : i + batch]) for i in range(0, len(z), batch)])


def write_report(report: dict, path: Path, markdown) -> None:
    """Write a benchmark's report as JSON and print its table (`markdown(report)`), as every decoder benchmark ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    print(f"wrote {path}")


def held_out_arguments(ap: argparse.ArgumentParser, n: int, split: str, json_path: str) -> None:
    """The options every decoder benchmark shares: which held-out latents, how many threads, where the JSON goes."""
    ap.add_argument("--n", type=int, default=n, help="held-out prompt and seed pairs")
    ap.add_argument("--split", choices=("test", "val"), default=split, help="val: where decoder settings are chosen")
    ap.add_argument("--seed", type=int, default=0, help="seed of the prompt list")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=Path(json_path))


def parse_held_out(ap: argparse.ArgumentParser, n: int, split: str, json_path: str, markdown):
    """Parse a held-out decoder benchmark's options (the caller adds its --decoder and its own): --student, --table
    (print the table of a JSON the script wrote, then None) and `held_out_arguments`."""
    ap.add_argument("--student", help="a distill run (or 'builtin' for the teacher)")
    ap.add_argument("--table", type=Path, help="only print the table of a JSON this script wrote")
    held_out_arguments(ap, n, split, json_path)
    args = ap.parse_args()
    if args.table is not None:
        print(markdown(json.loads(args.table.read_text())))
        return None
    if not (args.student and args.decoder):
        ap.error("--student and --decoder are required (or --table JSON)")
    return args


def held_out_set(student: str, args: argparse.Namespace):
    """(opened student, ToyBench classifier, pairs, latents): the held-out pairs of `args` (held_out_arguments),
    whose noise seeds no training run uses, and the student's latents for them at the classifier's clip size."""
    torch.set_num_threads(args.threads)
    opened = open_model(student, device="cpu")
    clf = load_classifier(None)
    pairs = prompts(args.n, args.split, args.seed)
    z = held_out_latents(opened, pairs, (clf.cfg.frames, clf.cfg.height, clf.cfg.width), args.batch)
    return opened, clf, pairs, z


def _time(fn, z: torch.Tensor, repeats: int) -> float:
    fn(z)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(z)
        best = min(best, time.perf_counter() - t0)
    return best / len(z)


def _status_mb(field: str) -> float:
    """A /proc/self/status memory field (VmRSS: resident now; VmHWM: its high-water mark), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _peak_child(args: tuple, queue) -> None:
    """In a fresh process: how far the resident set's high-water mark rises above the resident set before a decode
    of a batch (MB). The kernel keeps the mark; writing 5 to /proc/self/clear_refs restarts it at the current resident
    set (Linux), so the figure is exact, not sampled, and an earlier peak (loading the models) cannot hide it."""
    student, decoder, name, shape, threads = args
    torch.set_num_threads(threads)
    _, fns, _ = _decoders(student, decoder)
    z = torch.randn(shape)
    fns[name](z[:1, :, :1])  # load lazily-initialised kernels before the baseline
    try:
        Path("/proc/self/clear_refs").write_text("5")
        base = _status_mb("VmRSS")
    except (OSError, RuntimeError) as exc:  # not Linux, or /proc is closed: say so instead of a silent wait
        queue.put(f"peak memory needs Linux's /proc/self/clear_refs and status ({exc}); pass --quick to skip it")
        return
    fns[name](z)
    queue.put(_status_mb("VmHWM") - base)


def peak_mb(student: str, decoder: str, name: str, shape: tuple, threads: int, processes: int = 3) -> float:
    """The median over `processes` fresh processes of the memory one batch decode adds (MB): the allocator's
    choices move a single process's figure from one process to the next."""
    values = []
    ctx = mp.get_context("spawn")
    for _ in range(processes):
        queue = ctx.Queue()
        p = ctx.Process(target=_peak_child, args=((student, decoder, name, shape, threads), queue))
        p.start()
        value = queue.get(timeout=600)
        p.join()
        if isinstance(value, str):
            raise SystemExit(value)
        values.append(value)
    return round(statistics.median(values), 1)


def _config(run: Path) -> dict | None:
    """The decoder run's settings (its config.yaml), for the comparison rows."""
    import yaml

    path = run / "config.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", help="a distill run (or 'builtin' for the teacher)")
    ap.add_argument("--decoder", nargs="+", help="decoder distill runs (or decoder/ folders), one per training seed")
    ap.add_argument("--table", type=Path, help="only print the table of a JSON this script wrote")
    ap.add_argument("--compare", type=Path, nargs="+", help="only print one row per JSON (decoder settings compared)")
    ap.add_argument(
        "--against", nargs="+", help="baseline decoder runs (one per training seed): paired differences against them"
    )
    ap.add_argument("--quick", action="store_true", help="fidelity and ToyBench only (no timing, no memory)")
    ap.add_argument("--repeats", type=int, default=3)
    held_out_arguments(ap, 256, "test", "benchmarks/results/decoder.json")
    args = ap.parse_args()
    if args.table is not None:
        print(markdown(json.loads(args.table.read_text())))
        return
    if args.compare:
        print(compare_rows([json.loads(p.read_text()) for p in args.compare]))
        return
    if not (args.student and args.decoder):
        ap.error("--student and --decoder are required (or --table JSON)")
    opened, clf, pairs, z = held_out_set(args.student, args)
    tiny = load_decoder_for(args.decoder[0], opened.model_dir)[0]
    fns = {"vae": opened.adapter.decode, "tiny": lambda x: decode_video(tiny, x)}
    others = [load_decoder_for(d, opened.model_dir)[0] for d in args.decoder[1:]]
    baselines = [load_decoder_for(d, opened.model_dir)[0] for d in args.against or ()]
    frames, height, width = clf.cfg.frames, clf.cfg.height, clf.cfg.width

    def decode_all(fn) -> torch.Tensor:
        return decode_in_batches(fn, z, args.batch)

    videos, seconds = {}, {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        videos[name] = decode_all(fn)
        seconds[name] = round(time.perf_counter() - t0, 2)
    tiny_videos = [videos["tiny"]] + [decode_all(lambda x, d=d: decode_video(d, x)) for d in others]
    base_videos = [decode_all(lambda x, d=d: decode_video(d, x)) for d in baselines]
    p = torch.stack([psnr(v, videos["vae"]) for v in tiny_videos])  # (seeds, clips)
    s = torch.stack([ssim(v, videos["vae"]) for v in tiny_videos])

    def q(v: torch.Tensor) -> np.ndarray:  # 8 bits, as every saved clip (and ToyBench's folders) holds them
        return (v.numpy() * 255.0 + 0.5).astype(np.uint8)

    def score(v: torch.Tensor) -> dict:
        return evaluate_videos(q(v), pairs, classifier=clf, per_clip=True)

    vae_toy, tiny_toy = score(videos["vae"]), [score(v) for v in tiny_videos]
    vae_set, tiny_sets = [vae_toy["per_clip"]], [t["per_clip"] for t in tiny_toy]
    intervals = {"vae": summarise(vae_set), "tiny": summarise(tiny_sets), "tiny_minus_vae": compare(tiny_sets, vae_set)}
    against = None
    if baselines:
        base_sets = [score(v)["per_clip"] for v in base_videos]
        intervals["against"] = summarise(base_sets)
        intervals["tiny_minus_against"] = compare(tiny_sets, base_sets)
        pb = torch.stack([psnr(v, videos["vae"]) for v in base_videos])
        against = {
            "decoders": [str(find_decoder(d)) for d in args.against],
            "configs": [_config(find_decoder(d).parent) for d in args.against],
            "psnr_db": {"mean": round(pb.mean().item(), 3), "seeds": [round(x, 3) for x in pb.mean(1).tolist()]},
            "psnr_db_minus_against": paired_mean_interval(p.mean(0) - pb.mean(0)),
        }

    def mean_of(values: list) -> float:
        return round(float(np.mean(values)), 4)

    toy = {
        "vae": {k: vae_toy[k] for k in ("accuracy", "frechet_distance", "temporal_consistency")},
        "tiny": {  # means over the decoders (training seeds)
            "accuracy": {k: mean_of([t["accuracy"][k] for t in tiny_toy]) for k in tiny_toy[0]["accuracy"]},
            "frechet_distance": mean_of([t["frechet_distance"] for t in tiny_toy]),
            "temporal_consistency": mean_of([t["temporal_consistency"] for t in tiny_toy]),
        },
    }
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
        peak = {name: peak_mb(args.student, args.decoder[0], name, shape, args.threads) for name in fns}
    vae = opened.adapter.vae
    params = {
        "vae_decoder": sum(p.numel() for n, p in vae.named_parameters() if not n.startswith(("encoder", "quant")))
    }
    params["tiny"] = sum(p.numel() for p in tiny.parameters())
    runs = [find_decoder(d) for d in args.decoder]
    trainings = []
    for run in runs:
        summary_path = run.parent / "summary.json"
        trainings.append(json.loads(summary_path.read_text()) if summary_path.is_file() else None)
    report = {
        "student": args.student,
        "decoder": str(runs[0]),
        "decoders": [str(r) for r in runs],
        "n": len(pairs),
        "split": f"held-out ({args.split} seeds)",
        "size": [frames, height, width],
        "device": f"CPU ({platform.machine()}, {args.threads} thread(s))",
        "torch": torch.__version__,
        "psnr_db": {
            "mean": round(p.mean().item(), 3),
            "min": round(p.min().item(), 3),
            "std": round(p.std().item(), 3),
            "seeds": [round(x, 3) for x in p.mean(1).tolist()],
        },
        "ssim": {
            "mean": round(s.mean().item(), 4),
            "min": round(s.min().item(), 4),
            "seeds": [round(x, 4) for x in s.mean(1).tolist()],
        },
        "toybench": toy,
        "intervals": intervals,
        "decode_seconds_all_clips": seconds,
        "timing": timing,
        "speedup": {k: round(timing["vae"][k] / timing["tiny"][k], 2) for k in timing.get("vae", {})},
        "peak_memory_added_mb": peak,
        "parameters": params,
        "training": trainings[0],
        "training_seeds": trainings,
        "config": _config(runs[0].parent),
        "configs": [_config(r.parent) for r in runs],
        "against": against,
    }
    write_report(report, args.json, markdown)


def paired_mean_interval(diff: torch.Tensor, draws: int = 1000, seed: int = 0) -> dict:
    """Mean of per-clip differences with a 95% percentile bootstrap interval over clips."""
    d = diff.double().numpy()
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(len(d), size=(draws, len(d)))].mean(1)
    return {
        "diff": round(float(d.mean()), 3),
        "lo": round(float(np.percentile(boot, 2.5)), 3),
        "hi": round(float(np.percentile(boot, 97.5)), 3),
    }


def compare_rows(reports: list[dict]) -> str:
    """One row per report: the decoder's settings that differ from the defaults, fidelity and ToyBench."""
    from accvideo.decoder import DecoderDistillConfig
    from accvideo.decoder.train import BEFORE_SETTINGS

    default = DecoderDistillConfig()
    v = reports[0]["toybench"]["vae"]
    lines = [
        f"{reports[0]['n']} {reports[0]['split']} clips from {reports[0]['student']}; the VAE's own clips: "
        f"shape accuracy {v['accuracy']['shape']:.3f}, Frechet distance {v['frechet_distance']:.1f}, temporal "
        f"consistency {v['temporal_consistency']:.4f}",
        "",
        "| decoder settings | training seeds | PSNR (dB) | SSIM | mean acc | shape | Frechet | temporal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    datas = [(r.get("config") or {}).get("data") for r in reports]
    # the SynVid most rows trained on (a link and its target are one SynVid); a row on another one names it
    keys = [os.path.realpath(d) if d and os.path.exists(d) else d for d in datas]
    usual = max(sorted(set(keys), key=str), key=keys.count)
    for r, data, key in zip(reports, datas, keys, strict=True):
        config = {**BEFORE_SETTINGS, **(r.get("config") or {})}  # a setting newer than the run: how it ran
        changed = [f"{k}={x}" for k, x in config.items() if k in SETTINGS and getattr(default, k) != x]
        changed = changed + ([f"data={data}"] if key != usual else [])
        t = r["toybench"]["tiny"]
        lines.append(
            f"| {' '.join(changed) or 'the defaults'} | {len(r.get('decoders', [r['decoder']]))} | "
            f"{r['psnr_db']['mean']:.2f} | {r['ssim']['mean']:.4f} | "
            f"{t['accuracy']['mean']:.3f} | {t['accuracy']['shape']:.3f} | {t['frechet_distance']:.1f} | "
            f"{t['temporal_consistency']:.4f} |"
        )
    return "\n".join(lines)


# the decoder settings a comparison row names when they differ from the defaults
SETTINGS = (
    "videos",
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
    "ema",
    "edge_weight",
    "gradient_weight",
    "spectral_weight",
    "spectral_balance",
    "ssim_weight",
    "feature_weight",
    "detail_clips",
    "adv_weight",
    "adv_start",
)


METRICS = (  # (label, intervals.py name, digits)
    ("ToyBench mean accuracy", "accuracy", 3),
    ("ToyBench shape accuracy", "shape", 3),
    ("Frechet distance", "frechet_distance", 1),
    ("temporal consistency", "temporal_consistency", 4),
)


def _sd(seeds: list | None, digits: int) -> str:
    return f" ±{np.std(seeds, ddof=1):.{digits}f}" if seeds and len(seeds) > 1 else ""


def _cell(m: dict, digits: int, spread: bool) -> str:
    text = f"{m['mean']:.{digits}f} [{m['lo']:.{digits}f}, {m['hi']:.{digits}f}]"
    return text + (f" ±{m['sd']:.{digits}f}" if spread else "")


def _diff(m: dict, digits: int) -> str:
    return f"{m['diff']:+.{digits}f} [{m['lo']:+.{digits}f}, {m['hi']:+.{digits}f}]"


def markdown(r: dict) -> str:
    """The side-by-side table of a report (docs/decoder.md quotes it)."""
    t, v = r["toybench"]["tiny"], r["toybench"]["vae"]
    iv = r.get("intervals")
    seeds = len(r.get("decoders", [r["decoder"]]))
    spread = f" (mean of {seeds} training seeds; spread ±sd)" if seeds > 1 else ""
    rows = [
        (
            "PSNR vs the VAE's frames (dB), mean / min" + spread,
            "-",
            f"{r['psnr_db']['mean']:.2f} / {r['psnr_db']['min']:.2f}" + _sd(r["psnr_db"].get("seeds"), 2),
        ),
        (
            "SSIM vs the VAE's frames, mean / min",
            "-",
            f"{r['ssim']['mean']:.4f} / {r['ssim']['min']:.4f}" + _sd(r["ssim"].get("seeds"), 4),
        ),
    ]
    if iv:  # each metric with its 95% bootstrap interval over clips (and the spread over seeds)
        for label, key, digits in METRICS:
            rows.append((label, _cell(iv["vae"][key], digits, False), _cell(iv["tiny"][key], digits, seeds > 1)))
    else:
        rows += [
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
    if iv:
        d = iv["tiny_minus_vae"]
        fd = d["frechet_distance"]
        base = iv["vae"]["frechet_distance"]["mean"]
        lines += [
            "Tiny decoder minus VAE (paired 95% bootstrap intervals over clips): "
            + ", ".join(f"{label.replace('ToyBench ', '')} {_diff(d[key], digits)}" for label, key, digits in METRICS)
            + f"; the Frechet distance {100 * fd['diff'] / base:+.0f}% [{100 * fd['lo'] / base:+.0f}%, "
            f"{100 * fd['hi'] / base:+.0f}%] of the VAE's.",
            "",
        ]
    if iv and "tiny_minus_against" in iv:
        d, a = iv["tiny_minus_against"], r["against"]
        dp = a["psnr_db_minus_against"]
        lines += [
            f"Against {len(a['decoders'])} baseline run(s) ({', '.join(a['decoders'])}; "
            f"PSNR {a['psnr_db']['mean']:.2f} dB), tiny minus baseline (paired 95% bootstrap intervals over clips): "
            f"PSNR {_diff(dp, 2)} dB, "
            + ", ".join(f"{label.replace('ToyBench ', '')} {_diff(d[key], digits)}" for label, key, digits in METRICS),
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
