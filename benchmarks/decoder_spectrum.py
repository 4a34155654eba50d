"""Where the tiny decoder's Frechet gap comes from: detail energy by spatial frequency (docs/decoder.md).

    python benchmarks/decoder_spectrum.py --student runs/data/distill --decoder runs/dexp4/b8it4800 \
        runs/dexp4/spec1 --n 64 --split val --json benchmarks/results/decoder_spectrum.json

The student samples N held-out (val by default) latents once; the teacher's VAE and each decoder decode them, and
the world renders the real clips of the same prompts and seeds. For each set: the power of its frames (per frame
and colour, mean removed, 2D FFT) summed over radial frequency bands in cycles per pixel, as a ratio to the real
clips' power in the same band. A ratio under 1 is detail missing (blur), over 1 detail added. Prints a Markdown
table and writes JSON.
"""

from __future__ import annotations

import argparse

import torch
from decoder import decode_in_batches, held_out_set, parse_held_out, write_report  # benchmarks/decoder.py

from accvideo.evaluate.classifier import as_float_clips
from accvideo.models.decoder import decode_video, find_decoder, load_decoder_for
from accvideo.world.attributes import parse_caption
from accvideo.world.render import WorldConfig, render_batch

BANDS = ((0.0, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.5), (0.5, 0.71))


def band_power(videos: torch.Tensor) -> list[float]:
    """Power per band of videos (N, F, H, W, 3) in [0, 1]: |FFT|^2 of each frame and colour, its mean removed,
    averaged over frames and summed over the band's frequencies."""
    x = videos.float().permute(0, 1, 4, 2, 3).flatten(0, 2)
    x = x - x.mean((-2, -1), keepdim=True)
    power = torch.fft.rfft2(x, norm="ortho").abs().pow(2).mean(0)
    fy = torch.fft.fftfreq(x.shape[-2]).abs()[:, None]
    fx = torch.fft.rfftfreq(x.shape[-1])[None]
    radius = (fy**2 + fx**2).sqrt()
    return [power[(radius >= lo) & (radius < hi)].sum().item() for lo, hi in BANDS]


def markdown(report: dict) -> str:
    bands = report["bands_cycles_per_pixel"]
    lines = [
        f"Power per band of spatial frequency (cycles per pixel) over the real clips', {report['n']} held-out "
        f"{report['split']} pairs:",
        "",
        "| frames | " + " | ".join(f"{lo}-{hi}" for lo, hi in bands) + " |",
        "|---|" + "---:|" * len(bands),
    ]
    for name, values in report["power_over_real"].items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decoder", nargs="+", help="decoder distill runs (or decoder/ folders)")
    args = parse_held_out(ap, 64, "val", "benchmarks/results/decoder_spectrum.json", markdown)
    if args is None:
        return
    opened, clf, pairs, z = held_out_set(args.student, args)
    size = (clf.cfg.frames, clf.cfg.height, clf.cfg.width)

    items = [(parse_caption(p), int(s)) for p, s in pairs]
    real = as_float_clips(render_batch(items, WorldConfig(*size)))
    sets = {"real clips": real, "teacher VAE": decode_in_batches(opened.adapter.decode, z, args.batch)}
    for d in args.decoder:
        tiny, _ = load_decoder_for(d, opened.model_dir)
        sets[str(find_decoder(d).parent)] = decode_in_batches(lambda x, t=tiny: decode_video(t, x), z, args.batch)
    reference = band_power(real)
    rows = {name: [round(p / r, 3) for p, r in zip(band_power(v), reference, strict=True)] for name, v in sets.items()}
    report = {
        "student": args.student,
        "n": len(pairs),
        "split": args.split,
        "bands_cycles_per_pixel": [list(b) for b in BANDS],
        "power_over_real": rows,
    }
    write_report(report, args.json, markdown)


if __name__ == "__main__":
    main()
