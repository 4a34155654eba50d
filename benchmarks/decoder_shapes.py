"""Where a tiny decoder loses ToyBench's shape accuracy (docs/decoder.md, "Where the shape gap came from").

    python benchmarks/decoder_shapes.py --student runs/data/distill --decoder runs/dec_old_default runs/dec \
        --n 256 --split val --json benchmarks/results/decoder_shapes.json

On N held-out pairs (val by default: where settings are chosen), the student's latents are decoded by the VAE and
by each decoder. Per set of clips: the classifier's shape confusion (rows: the caption's shape, columns: the
predicted one); per decoder: its mean absolute error against the VAE's frames on the pixels next to an edge of the
VAE's frame (an x difference above 0.1) and elsewhere; and two controls: the VAE's frames blurred (Gaussian, sigma
1 px) and the decoder's sharpened (unsharp mask), scored again. Prints Markdown and writes JSON.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from decoder import decode_in_batches, held_out_arguments, held_out_set, write_report  # benchmarks/decoder.py

from accvideo.models.decoder import decode_video, load_decoder_for

EDGE = 0.1  # an x difference above this (frames in [0, 1]) marks an edge pixel


def blur(video: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur of videos (B, F, H, W, 3), edges replicated."""
    k = torch.arange(-3, 4, dtype=video.dtype)
    k = torch.exp(-(k**2) / (2 * sigma**2))
    k = k / k.sum()
    b, f, h, w, c = video.shape
    x = video.permute(0, 1, 4, 2, 3).reshape(-1, 1, h, w)
    x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7))
    x = F.conv2d(F.pad(x, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1))
    return x.view(b, f, c, h, w).permute(0, 1, 3, 4, 2)


def quantise(video: torch.Tensor) -> torch.Tensor:
    """To 8 bits and back, as every saved clip holds it."""
    return (video * 255.0 + 0.5).floor() / 255.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", required=True)
    ap.add_argument("--decoder", nargs="+", required=True, help="decoder runs to compare")
    held_out_arguments(ap, 256, "val", "benchmarks/results/decoder_shapes.json")
    args = ap.parse_args()
    opened, clf, pairs, z = held_out_set(args.student, args)
    shapes = list(clf.cfg.classes["shape"])
    truth = torch.tensor([next(i for i, s in enumerate(shapes) if f" {s} " in p) for p, _ in pairs])

    def predicted(video: torch.Tensor) -> torch.Tensor:
        video = quantise(video.clamp(0, 1))
        with torch.no_grad():
            return torch.cat([clf(video[i : i + 32])[0]["shape"].argmax(1) for i in range(0, len(video), 32)])

    def scored(video: torch.Tensor) -> dict:
        pred = predicted(video)
        confusion = torch.zeros(len(shapes), len(shapes), dtype=torch.long)
        confusion.index_put_((truth, pred), torch.ones_like(truth), accumulate=True)
        return {"shape_accuracy": round((pred == truth).float().mean().item(), 4), "confusion": confusion.tolist()}

    vae = decode_in_batches(opened.adapter.decode, z, args.batch)
    edge = F.pad((vae[:, :, :, 1:] - vae[:, :, :, :-1]).abs().mean(-1), (0, 1)) > EDGE
    report = {
        "student": args.student,
        "n": len(pairs),
        "split": args.split,
        "shapes": shapes,
        "edge_pixel_fraction": round(edge.float().mean().item(), 4),
        "vae": scored(vae),
        "vae_blurred_sigma1": scored(blur(vae, 1.0))["shape_accuracy"],
        "decoders": {},
    }
    for path in args.decoder:
        tiny_model, _ = load_decoder_for(path, opened.model_dir)
        tiny = decode_in_batches(lambda x, m=tiny_model: decode_video(m, x), z, args.batch)
        err = (tiny - vae).abs().mean(-1)
        sharpened = (tiny + (tiny - blur(tiny, 1.0))).clamp(0, 1)
        report["decoders"][path] = {
            **scored(tiny),
            "sharpened_shape_accuracy": scored(sharpened)["shape_accuracy"],
            "mae_edge_pixels": round(err[edge].mean().item(), 4),
            "mae_other_pixels": round(err[~edge].mean().item(), 4),
        }
    write_report(report, args.json, markdown)


def markdown(r: dict) -> str:
    head = "| caption \\ predicted | " + " | ".join(r["shapes"]) + " |"
    rule = "|---|" + "---:|" * len(r["shapes"])

    def confusion(m: list) -> list[str]:
        return [
            head,
            rule,
            *[f"| {s} | " + " | ".join(map(str, row)) + " |" for s, row in zip(r["shapes"], m, strict=True)],
        ]

    v = r["vae"]
    lines = [
        f"{r['n']} held-out ({r['split']}) clips from {r['student']}; {100 * r['edge_pixel_fraction']:.1f}% of the "
        f"pixels are next to an edge of the VAE's frames",
        "",
        f"VAE: shape accuracy {v['shape_accuracy']:.3f}; its frames blurred (sigma 1 px): "
        f"{r['vae_blurred_sigma1']:.3f}",
        "",
        *confusion(v["confusion"]),
    ]
    for name, d in r["decoders"].items():
        lines += [
            "",
            f"{name}: shape accuracy {d['shape_accuracy']:.3f}; sharpened: {d['sharpened_shape_accuracy']:.3f}; "
            f"mean absolute error against the VAE {d['mae_edge_pixels']:.4f} next to edges, "
            f"{d['mae_other_pixels']:.4f} elsewhere",
            "",
            *confusion(d["confusion"]),
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
