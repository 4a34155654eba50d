"""Bookkeeping at scale: what a command's start, resume, item or log point costs as the item count grows.

    python benchmarks/bookkeeping.py --json benchmarks/results/bookkeeping_cpu.json
    python benchmarks/bookkeeping.py --only ledger_update --label now --json benchmarks/results/bookkeeping_cpu.json
    mkdir /tmp/before && git archive COMMIT src | tar -x -C /tmp/before  # the code before, beside this script:
    PYTHONPATH=/tmp/before/src python benchmarks/bookkeeping.py --only ledger_update --ledger-updates 50 \
        --label "before (COMMIT)" --json benchmarks/results/bookkeeping_cpu.json

Synthetic folders at two sizes each (only the bookkeeping code paths are timed; the start-up cases run the tiny
random teacher):

- synvid_resume: `synthesize`'s folder check (`layout.prepare_folder`) over N shards of 4 items (1 MiB of latents a
  shard), as a resume runs it: once with the shards' stat witnesses (written with the shards), once without (every
  shard's digests checked, reading every byte: the cost before the witness, and of a first resume of a copied
  dataset). The bytes read grow with the dataset (a 100k-item SynVid at 480x832x81 holds about 5 TB).
- synvid_index: the reader's index (`SynVidDataset`: every shard header once, no tensor read).
- sample_resume: `sample --prompts`'s `_prepare` over N listed clips of 256 KiB each: with the clips' stat witnesses,
  and without (the first resume of a folder made before them: every clip hashed, as every resume did before).
- ledger_update: `record_file` in a folder whose `.accvideo-files.json` lists N files: one update (`seconds`), then
  `updates` more (2N, or `--ledger-updates`), each a new file, timed together (`seconds_per_update`, the journal's
  folds included) with the ledger bytes they read. Before the journal each update read, pruned and rewrote the whole
  ledger.
- evaluate_videos: `evaluate --videos` of a folder of N 8-bit 17x64x64 .npy clips (world renders), in a process of its
  own: its peak resident memory (VmHWM) and seconds.
- synvid_start: a `synthesize` rerun with nothing left to do over N one-item shards of the tiny teacher: the shard
  header reads (`safe_open` of a shard) and seconds of the whole command (the teacher loaded once, before).
- decoder_resume: `decoder distill` resumed over N SynVid items (tiny teacher, one iteration more): the SynVid items
  read whole to check its kept target chunks, and the seconds of its targets stage.
- losses_plot: `read_losses` + `plot_losses` of an N-line losses.jsonl (distill does it once per checkpoint).
- loss_log_resume: `LossLog` on resume (the log is read and rewritten once).

Prints a Markdown table; `--json PATH` writes it, keeping the rows of PATH that this run did not measure (another
case, size or `--label`: a row without one was measured at 7ce3e56, before any `--label`).
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


LEDGER_UPDATES: int | None = None  # --ledger-updates: fewer updates, for code whose each update is O(N)


def ledger_update(work: Path, n: int) -> dict:
    from accvideo.core import outputs

    folder = work / f"ledger{n}"
    folder.mkdir()
    files = {}
    for i in range(n):
        (folder / f"{i:06d}.mp4").write_bytes(b"x")
        files[f"{i:06d}.mp4"] = {"command": "sample", "sha256": "0" * 64}
    (folder / outputs.LEDGER).write_text(json.dumps({"format": outputs.FORMAT, "files": files}, indent=1) + "\n")
    ledger_bytes = (folder / outputs.LEDGER).stat().st_size
    (folder / "new.mp4").write_bytes(b"y")
    t0 = time.perf_counter()
    outputs.record_file(folder / "new.mp4", "sample")
    seconds = time.perf_counter() - t0
    updates = LEDGER_UPDATES or 2 * n
    for i in range(updates):
        (folder / f"u{i:07d}.mp4").write_bytes(b"u%d" % i)
    read, real = [], outputs.read_small_file
    outputs.read_small_file = lambda path, *a: read.append(len(data := real(path, *a))) or data
    try:
        t0 = time.perf_counter()
        for i in range(updates):
            outputs.record_file(folder / f"u{i:07d}.mp4", "sample")
        per_update = (time.perf_counter() - t0) / updates
    finally:
        outputs.read_small_file = real
    return {
        "n": n,
        "ledger_bytes": ledger_bytes,
        "seconds": round(seconds, 4),
        "updates": updates,
        "seconds_per_update": round(per_update, 5),
        "bytes_read_per_update": round(sum(read) / updates),
        "kept": len(outputs._ledger(folder)),
    }


def evaluate_videos(work: Path, n: int) -> dict:
    """A child process scores the folder (its peak memory is its own); the clips are renders of the pairs, every
    fifth one noise."""
    import subprocess
    import sys

    import numpy as np

    from accvideo.evaluate.folder import write_video_folder
    from accvideo.world.attributes import parse_caption, prompts
    from accvideo.world.render import render_batch

    pairs = prompts(n, "heldout", seed=7)
    clips = np.concatenate(
        [
            (render_batch([(parse_caption(c), s) for c, s in pairs[i : i + 256]]) * 255).round().astype(np.uint8)
            for i in range(0, n, 256)
        ]
    )
    clips[::5] = np.random.default_rng(0).integers(0, 256, clips[::5].shape, np.uint8)  # some far from their prompt
    folder = work / f"clips-eval{n}"
    write_video_folder(folder, clips, pairs, "npy")
    clip_bytes = int(clips[0].nbytes)
    del clips
    # VmHWM, the peak of this process's own memory: ru_maxrss carries over the parent's across fork and exec
    code = (
        "import json, re, sys, time\n"
        "from pathlib import Path\n"
        "from accvideo.evaluate.config import EvaluateConfig\n"
        "from accvideo.evaluate.run import run_evaluate\n"
        "t0 = time.perf_counter()\n"
        "m = run_evaluate(EvaluateConfig(videos=sys.argv[1], out=sys.argv[2]), progress=False)\n"
        "peak = int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text())[1]) / 1024\n"
        "print(json.dumps({'seconds': time.perf_counter() - t0, 'frechet_distance': m['frechet_distance'],\n"
        "    'peak_rss_mib': peak}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(work / f"eval{n}")], capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "n": n,
        "clip_bytes": clip_bytes,
        "seconds": round(got["seconds"], 2),
        "peak_rss_mib": round(got["peak_rss_mib"]),
        "frechet_distance": got["frechet_distance"],
    }


def _tiny_teacher(work: Path):
    from accvideo.models import load_adapter
    from accvideo.models.tiny import save_tiny_wan

    folder = work / "tiny-wan"
    if not folder.is_dir():
        save_tiny_wan(folder, seed=0, num_layers=1)
    return folder, load_adapter(folder)


def _tiny_synvid(work: Path, n: int, name: str, shard_size: int, frames: int = 5, size: int = 16):
    from accvideo.synthesize import SynthConfig, synthesize

    teacher, adapter = _tiny_teacher(work)
    (work / f"{name}.txt").write_text("".join(f"a red circle moving left {i}\n" for i in range(n)))
    cfg = SynthConfig(
        teacher=str(teacher),
        prompts=str(work / f"{name}.txt"),
        out=str(work / name),
        steps=2,
        key_steps=1,
        frames=frames,
        height=size,
        width=size,
        shard_size=shard_size,
        batch=shard_size,
    )
    synthesize(cfg, adapter=adapter, progress=False)
    return cfg, teacher, adapter


def synvid_start(work: Path, n: int) -> dict:
    from accvideo.synthesize import shards, synthesize

    cfg, _, adapter = _tiny_synvid(work, n, f"start{n}", 1)
    opened, real = [], shards.safe_open
    shards.safe_open = lambda path, *a, **kw: opened.append(path) or real(path, *a, **kw)
    try:
        t0 = time.perf_counter()
        summary = synthesize(cfg, adapter=adapter, progress=False)
        seconds = time.perf_counter() - t0
    finally:
        shards.safe_open = real
    assert summary["shards_skipped"] == n
    return {"n": n, "seconds": round(seconds, 3), "header_reads": sum("shard-" in str(p) for p in opened)}


def decoder_resume(work: Path, n: int) -> dict:
    from accvideo.decoder import DecoderDistillConfig, distill_decoder
    from accvideo.synthesize.dataset import SynVidDataset

    cfg, teacher, _ = _tiny_synvid(work, n, f"dec-syn{n}", 16, frames=9, size=32)
    small = dict(width=16, depth=1, holdout=2, batch=4, log_every=10, device="cpu")

    def dec(iterations: int) -> DecoderDistillConfig:
        return DecoderDistillConfig(
            teacher=str(teacher), data=cfg.out, out=str(work / f"dec{n}"), **small, iterations=iterations
        )

    distill_decoder(dec(1), progress=False)
    read, real = [], SynVidDataset._item
    SynVidDataset._item = lambda self, i, check: read.append(i) or real(self, i, check)
    try:
        summary = distill_decoder(dec(2), progress=False)
    finally:
        SynVidDataset._item = real
    return {"n": n, "seconds": summary["targets_seconds"], "items_read": len(read)}


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
    "evaluate_videos": (evaluate_videos, (1000, 4000)),
    "synvid_start": (synvid_start, (100, 1000)),
    "decoder_resume": (decoder_resume, (64, 512)),
    "losses_plot": (losses_plot, (5000, 50000)),
    "loss_log_resume": (loss_log_resume, (5000, 50000)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--only", nargs="*", help="cases to run (default: all)")
    parser.add_argument("--sizes", nargs="*", type=int, help="item counts (default: each case's two)")
    parser.add_argument("--label", help="what code measured it (e.g. 'before (852c812)'), kept in each row")
    parser.add_argument("--ledger-updates", type=int, help="ledger_update's updates (default 2N)")
    args = parser.parse_args()
    global LEDGER_UPDATES
    LEDGER_UPDATES = args.ledger_updates
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (fn, sizes) in CASES.items():
            if args.only and name not in args.only:
                continue
            for n in args.sizes or sizes:
                row = {"case": name, **({"label": args.label} if args.label else {}), **fn(Path(tmp), n)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json and Path(args.json).is_file():  # rows of other cases, sizes or labels stay
        measured = {(r["case"], r["n"], r.get("label")) for r in rows}
        kept = json.loads(Path(args.json).read_text())["rows"]
        rows = [r for r in kept if (r["case"], r["n"], r.get("label")) not in measured] + rows
        rows.sort(key=lambda r: (list(CASES).index(r["case"]) if r["case"] in CASES else len(CASES), r["n"]))
    print("\n| case | n | label | seconds | other |\n|---|---:|---|---:|---|")
    for r in rows:
        other = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("case", "n", "seconds", "label"))
        print(f"| {r['case']} | {r['n']:,} | {r.get('label', '7ce3e56')} | {r.get('seconds', '')} | {other} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "peak_rss_mib": round(peak)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
