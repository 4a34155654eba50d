"""Which way the tiny decoder's Frechet gap points: a blur, probed with a fixed filter (docs/decoder.md).

    python benchmarks/decoder_detail.py --student runs/data/distill --decoder runs/dec_last-s0 \
        --targets runs/dec_ema-s1 --n 256 --split val --json benchmarks/results/decoder_detail.json

The student samples N held-out (val by default) latents once; the VAE and the decoder (its detail gain set to 0)
decode them. Each set of clips, and versions of them through a 3x3 box filter (edges replicated): the VAE's frames
with half a blur mixed in, the decoder's frames plus g times their high-pass (frames minus the blur) for a few g, is
scored by ToyBench: the Frechet distance to the real clips of the same prompts and seeds, split into its mean term
(the squared distance between the fitted Gaussians' centres) and the rest, and the Frechet distance to the VAE's own
clips. With --targets (a decoder run whose OUT/targets holds the VAE's decodes of training clips), also the
decoder's 3x3 high-pass energy as a share of the VAE's on the first 64 training clips. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from decoder import decode_in_batches, held_out_set, parse_held_out, write_report  # benchmarks/decoder.py

from accvideo.decoder.targets import Targets
from accvideo.evaluate.classifier import classify
from accvideo.evaluate.metrics import frechet_distance
from accvideo.models.decoder import decode_video, high_pass, load_decoder_for
from accvideo.world.attributes import parse_caption
from accvideo.world.render import WorldConfig, render_batch

GAINS = (0.25, 0.5, 1.0)


def filtered(video: torch.Tensor, gain: float) -> torch.Tensor:
    """Videos (N, F, H, W, 3) in [0, 1] plus gain x their 3x3 high-pass (a negative gain blurs), clamped."""
    frames = video.permute(0, 1, 4, 2, 3)
    return (frames + gain * high_pass(frames)).clamp(0, 1).permute(0, 1, 3, 4, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decoder", help="a decoder distill run (or decoder/ folder)")
    ap.add_argument("--targets", type=Path, help="a decoder run whose targets/ are the training clips' VAE decodes")
    args = parse_held_out(ap, 256, "val", "benchmarks/results/decoder_detail.json", markdown)
    if args is None:
        return
    opened, clf, pairs, z = held_out_set(args.student, args)
    tiny, _ = load_decoder_for(args.decoder, opened.model_dir)
    tiny.set_detail_gain(0.0)
    vae = decode_in_batches(opened.adapter.decode, z, args.batch)
    plain = decode_in_batches(lambda x: decode_video(tiny, x), z, args.batch)
    sets = {"teacher VAE": vae, "VAE, half a 3x3 blur mixed in": filtered(vae, -0.5), "tiny decoder": plain}
    sets.update({f"tiny decoder + {g} x high-pass": filtered(plain, g) for g in GAINS})

    def features(v: torch.Tensor) -> np.ndarray:
        return classify(clf, (v.numpy() * 255.0 + 0.5).astype(np.uint8))[1].astype(np.float64)

    size = (clf.cfg.frames, clf.cfg.height, clf.cfg.width)
    real = features(torch.from_numpy(render_batch([(parse_caption(p), int(s)) for p, s in pairs], WorldConfig(*size))))
    feats = {name: features(v) for name, v in sets.items()}
    rows = {}
    for name, f in feats.items():
        fd = frechet_distance(f, real)
        mean_term = float(((f.mean(0) - real.mean(0)) ** 2).sum())
        rows[name] = {
            "frechet_distance": round(fd, 2),
            "mean_term": round(mean_term, 2),
            "rest": round(fd - mean_term, 2),
            "frechet_to_vae": round(frechet_distance(f, feats["teacher VAE"]), 2),
        }
    report = {"student": args.student, "decoder": args.decoder, "n": len(pairs), "split": args.split, "rows": rows}
    if args.targets is not None:
        t = Targets(args.targets / "targets", 64, None).get(range(64), features=False)
        with torch.no_grad():
            frames = tiny.decode(t["latents"])
        ratio = high_pass(frames.double()).pow(2).sum() / high_pass(t["video"].double()).pow(2).sum()
        report["train_high_pass_energy_over_vae"] = round(ratio.item(), 3)
    write_report(report, args.json, markdown)


def markdown(r: dict) -> str:
    lines = [
        f"{r['n']} {r['split']} clips from {r['student']}, decoder {r['decoder']} (detail gain 0); ToyBench features",
        "",
        "| clips | Frechet distance to real | of which mean term | rest | Frechet distance to the VAE's |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, m in r["rows"].items():
        lines.append(
            f"| {name} | {m['frechet_distance']:.2f} | {m['mean_term']:.2f} | {m['rest']:.2f} | "
            f"{m['frechet_to_vae']:.2f} |"
        )
    if "train_high_pass_energy_over_vae" in r:
        lines += [
            "",
            f"3x3 high-pass energy of the decoder's frames over the VAE's, 64 training clips: "
            f"{r['train_high_pass_energy_over_vae']:.3f}",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
