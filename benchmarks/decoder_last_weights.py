"""The last weights of a `decoder distill ema=...` run as a decoder of their own, to pair with its average.

A run with `ema` saves the moving average as its decoder; its checkpoint still holds the last weights, which are
exactly what the same run with `ema=0` would have saved (averaging changes no training step: tests/test_decoder.py).
This writes them as OUT/decoder, with the run's config.yaml saying `ema: 0.0`, so `benchmarks/decoder.py --against`
compares the average with the last weights of the same training runs, paired on the same clips.

    python benchmarks/decoder_last_weights.py --run runs/dec_final --out runs/dec_final-last
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from accvideo.decoder.train import FORMAT, NAME
from accvideo.distill.checkpoint import load_checkpoint
from accvideo.models.decoder import load_decoder, save_decoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="the --out of a finished `accvideo decoder distill` with ema > 0")
    ap.add_argument("--out", required=True, help="where OUT/decoder is written")
    args = ap.parse_args()
    run = Path(args.run)
    saved = load_checkpoint(run / NAME, FORMAT, "decoder distill")
    if saved is None or saved.get("average") is None:
        raise SystemExit(f"{run / NAME} holds no averaged run's state; pass the --out of a run with ema > 0")
    decoder, info = load_decoder(run, None)
    decoder.load_state_dict(saved["decoder"])
    extra = {k: info[k] for k in ("teacher_identity", "iteration", "samples") if k in info}
    folder = save_decoder(Path(args.out) / "decoder", decoder, info["vae_identity"], info["family"], extra)
    config = yaml.safe_load((run / "config.yaml").read_text())
    (Path(args.out) / "config.yaml").write_text(yaml.safe_dump({**config, "ema": 0.0}, sort_keys=False))
    print(f"wrote the last weights of {run} (iteration {saved['iteration']}) to {folder}")


if __name__ == "__main__":
    main()
