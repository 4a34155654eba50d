"""Bookkeeping at scale: what a command's start, resume, item or log point costs as the item count grows.

    python benchmarks/bookkeeping.py --json benchmarks/results/bookkeeping_cpu.json

Synthetic folders at two sizes each (no model runs; only the bookkeeping code paths are timed):

- synvid_resume: `synthesize`'s folder check (`layout.prepare_folder`) over N shards of 4 items (1 MiB of latents a
  shard), as a resume runs it: once with the shards' stat witnesses (written with the shards), once without (every
  shard's digests checked, reading every byte: the cost before the witness, and of a first resume of a copied
  dataset). The bytes read grow with the dataset (a 100k-item SynVid at 480x832x81 holds about 5 TB).
- synvid_index: the reader's index (`SynVidDataset`: every shard header once, no tensor read).
- sample_resume: `sample --prompts`'s `_prepare` over N listed clips of 256 KiB each: with the clips' stat witnesses,
  and without (the first resume of a folder made before them: every clip hashed, as every resume did before).
- ledger_update: one `record_file` in a folder whose `.accvideo-files.json` lists N files (each update reads,
  stats every entry and rewrites the ledger).
- losses_plot: `read_losses` + `plot_losses` of an N-line losses.jsonl (distill does it once per checkpoint).
- loss_log_resume: `LossLog` on resume (the log is read and rewritten once).

Prints a Markdown table; `--json PATH` writes it.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path


def _settings(shard_size: int):
    from accvideo.synthesize.config import SynVidSettings

    return SynVidSettings(
        teacher="sampled:" + "0" * 64,
        family="wan",
        steps=10,
        shift=3.0,
        key_indices=(0, 2, 4, 6, 8, 10),
        guidance=5.0,
        negative_prompt="",
        frames=9,
        height=32,
        width=32,
        latent_shape=(4, 3, 16, 16),
        store="key",
        dtype="float32",
        shard_size=shard_size,
    )


def make_synvid(root: Path, shards: int, size: int = 4):
    """`shards` shards of `size` items (6 key latents of 4x3x16x16 float32 plus a 32x64 text encoding an item)."""
    import torch

    from accvideo.synthesize.prompts import Item
    from accvideo.synthesize.shards import write_shard

    settings = _settings(size)
    root.mkdir(parents=True)
    items = [Item(i, f"prompt {i}", i) for i in range(shards * size)]
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(size, 6, *settings.latent_shape, generator=g)
    cond = {"text": torch.randn(size, 32, 64, generator=g)}
    for k in range(shards):
        rows = [{"index": it.index, "prompt": it.prompt, "seed": it.seed} for it in items[k * size : (k + 1) * size]]
        write_shard(root, k, settings, rows, lat.unbind(), {n: v.unbind() for n, v in cond.items()}, size)
    return settings, items


def synvid_resume(work: Path, shards: int) -> dict:
    from accvideo.synthesize import layout
    from accvideo.synthesize.shards import checked_files

    root = work / f"syn{shards}"
    settings, items = make_synvid(root, shards)
    size = sum(p.stat().st_size for p in root.glob("shard-*"))
    t0 = time.perf_counter()
    layout.prepare_folder(root, settings, items, 4, False, work / "teacher")
    warm = time.perf_counter() - t0
    for path in checked_files(root):
        path.unlink()
    t0 = time.perf_counter()
    layout.prepare_folder(root, settings, items, 4, False, work / "teacher")
    cold = time.perf_counter() - t0
    return {"n": shards, "bytes": size, "seconds": round(warm, 3), "seconds_every_byte": round(cold, 3)}


def synvid_index(work: Path, shards: int) -> dict:
    from accvideo.synthesize.dataset import SynVidDataset

    root = work / f"syn{shards}"
    if not root.is_dir():
        make_synvid(root, shards)
    t0 = time.perf_counter()
    SynVidDataset(root)
    return {"n": shards, "seconds": round(time.perf_counter() - t0, 3)}


def sample_resume(work: Path, n: int) -> dict:
    import os

    from accvideo.core.files import file_sha256
    from accvideo.sample import batch
    from accvideo.synthesize.prompts import Item

    out = work / f"clips{n}"
    out.mkdir()
    wanted = {i: batch._entry(Item(i, f"prompt {i}", i), False) for i in range(n)}
    blob = os.urandom(256 << 10)
    lines = []
    for i, e in wanted.items():
        (out / e["file"]).write_bytes(blob[:-8] + i.to_bytes(8, "little"))
        lines.append(json.dumps({**e, "sha256": file_sha256(out / e["file"])}) + "\n")
    (out / batch.MANIFEST).write_text("".join(lines))
    settings = {"made_with": {"model": "x"}}
    (out / batch.SETTINGS).write_text(json.dumps(settings))
    t0 = time.perf_counter()
    assert len(batch._prepare(out, wanted, settings)) == n  # no witnesses yet: every clip hashed (as before)
    t1 = time.perf_counter()
    assert len(batch._prepare(out, wanted, settings)) == n  # the clips' witnesses match: none read
    t2 = time.perf_counter()
    return {"n": n, "bytes": n * len(blob), "seconds": round(t2 - t1, 3), "seconds_every_byte": round(t1 - t0, 3)}


def ledger_update(work: Path, n: int) -> dict:
    from accvideo.core import outputs

    folder = work / f"ledger{n}"
    folder.mkdir()
    files = {}
    for i in range(n):
        (folder / f"{i:06d}.mp4").write_bytes(b"x")
        files[f"{i:06d}.mp4"] = {"command": "sample", "sha256": "0" * 64}
    (folder / outputs.LEDGER).write_text(json.dumps({"format": outputs.FORMAT, "files": files}, indent=1) + "\n")
    (folder / "new.mp4").write_bytes(b"y")
    t0 = time.perf_counter()
    outputs.record_file(folder / "new.mp4", "sample")
    seconds = time.perf_counter() - t0
    kept = len(outputs._ledger(folder))
    return {
        "n": n,
        "ledger_bytes": (folder / outputs.LEDGER).stat().st_size,
        "seconds": round(seconds, 3),
        "kept": kept,
    }


def _losses(path: Path, n: int) -> None:
    rec = {"traj": 0.1, "g": 0.2, "d": 0.3, "acc_k": [0.5] * 5, "seconds": 1.0}
    path.write_text("".join(json.dumps({"iteration": i, "samples": 32 * i, **rec}) + "\n" for i in range(1, n + 1)))


def losses_plot(work: Path, n: int) -> dict:
    from accvideo.distill.plots import plot_losses, read_losses

    path = work / f"losses{n}.jsonl"
    _losses(path, n)
    t0 = time.perf_counter()
    records = read_losses(path)
    t1 = time.perf_counter()
    plot_losses(records, work / f"losses{n}.png")
    t2 = time.perf_counter()
    return {"n": n, "seconds_read": round(t1 - t0, 3), "seconds_plot": round(t2 - t1, 3)}


def loss_log_resume(work: Path, n: int) -> dict:
    from accvideo.distill.plots import LossLog

    path = work / f"resume{n}.jsonl"
    _losses(path, n)
    t0 = time.perf_counter()
    LossLog(path, resume_iteration=n)
    return {"n": n, "seconds": round(time.perf_counter() - t0, 3)}


CASES = {
    "synvid_resume": (synvid_resume, (200, 2000)),
    "synvid_index": (synvid_index, (200, 2000)),
    "sample_resume": (sample_resume, (500, 5000)),
    "ledger_update": (ledger_update, (5000, 50000)),
    "losses_plot": (losses_plot, (5000, 50000)),
    "loss_log_resume": (loss_log_resume, (5000, 50000)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--only", nargs="*", help="cases to run (default: all)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (fn, sizes) in CASES.items():
            if args.only and name not in args.only:
                continue
            for n in sizes:
                row = {"case": name, **fn(Path(tmp), n)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\n| case | n | seconds | other |\n|---|---:|---:|---|")
    for r in rows:
        other = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("case", "n", "seconds"))
        print(f"| {r['case']} | {r['n']:,} | {r.get('seconds', '')} | {other} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "peak_rss_mib": round(peak)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
