"""SynVid benchmark (docs/synvid.md): bytes per item with --store key vs all, and synthesis throughput
against plain teacher sampling of the same items, measured in the same process.

    OMP_NUM_THREADS=1 python benchmarks/synvid.py --teacher builtin --items 16 --json benchmarks/results/synvid.json
    python benchmarks/synvid.py --table benchmarks/results/synvid.json       # the docs table
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from accvideo.core.adapter import expand
from accvideo.core.runtime import batch_noise as start_noise
from accvideo.core.runtime import resolve_device, resolve_dtype, resolve_model
from accvideo.core.sampling import euler_sample
from accvideo.core.schedules import shifted_sigmas
from accvideo.models import load_adapter
from accvideo.models.defaults import fill_video
from accvideo.synthesize import SynthConfig, read_prompts, synthesize, write_prompts
from accvideo.synthesize.layout import shard_count, shard_items
from accvideo.synthesize.shards import list_shards
from accvideo.world import prompts as world_prompts


def plain_sampling(adapter, cfg: SynthConfig) -> float:
    """Seconds to sample cfg's items as `accvideo sample` does (encode, noise, guided Euler), nothing stored."""
    cfg, _ = fill_video(cfg, cfg.teacher, adapter.family)  # the teacher's negative prompt, as synthesize resolves it
    items = list(read_prompts(cfg.prompts, cfg.seed).items)
    sigmas = shifted_sigmas(cfg.steps, cfg.shift or adapter.default_shift)
    shape = adapter.latent_shape(cfg.frames, cfg.height, cfg.width)
    t0 = time.perf_counter()
    uncond = adapter.encode_prompts([cfg.negative_prompt])
    for k in range(shard_count(len(items), cfg.shard_size)):  # the same batches synthesis makes
        chunk = shard_items(items, k, cfg.shard_size)
        for b in range(0, len(chunk), cfg.batch):
            part = chunk[b : b + cfg.batch]
            cond = adapter.encode_prompts([it.prompt for it in part])
            neg = expand(uncond, len(part))
            with torch.inference_mode():
                x = euler_sample(
                    lambda x, s, cond=cond: adapter.velocity(x, s, cond),
                    start_noise([it.seed for it in part], shape, adapter.device),
                    sigmas,
                    guidance=cfg.guidance,
                    uncond=lambda x, s, neg=neg: adapter.velocity(x, s, neg),
                )
            x.cpu()  # synthesis brings its latents to the CPU too
    return time.perf_counter() - t0


def dataset_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in list_shards(root))


def table(result: dict) -> str:
    """The docs table (docs/synvid.md) of one benchmark JSON."""
    r = result
    rows = [
        ("bytes per item, `--store key`", f"{r['bytes_per_item_key']:,}"),
        ("bytes per item, `--store all`", f"{r['bytes_per_item_all']:,}"),
        (f"ratio key/all (expected (m+1)/(n+1) = {r['expected_ratio']:.3f})", f"{r['bytes_ratio']:.3f}"),
        ("plain teacher sampling, items/s", f"{r['plain_items_per_s']:.2f}"),
        ("synthesis loop, items/s", f"{r['synth_items_per_s']:.2f}"),
        (
            "synthesis end to end (+ teacher identity, folder checks), items/s",
            f"{r['synth_items_per_s_end_to_end']:.2f}",
        ),
        ("throughput synthesis/plain (loop)", f"{r['throughput_ratio']:.1%}"),
        ("throughput synthesis/plain (end to end)", f"{r['throughput_ratio_end_to_end']:.1%}"),
    ]
    head = (
        f"{r['teacher']} teacher, {r['device']}, {r['dtype']}, {r['items']} items, n = {r['steps']}, m = "
        f"{r['key_steps']}, guidance {r['guidance']}, {r['frames']}x{r['size']}x{r['size']} (latent "
        f"{'x'.join(map(str, r['latent_shape']))}), batch {r['batch']}, shard size {r['shard_size']}, median of "
        f"{r['repeats']}"
    )
    return "\n".join([head, "", "| measure | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


def main(
    teacher: Annotated[
        str, typer.Option(help="'tiny' (a random tiny Wan built in --work), 'builtin' or a folder.")
    ] = "tiny",
    items: Annotated[int, typer.Option(help="Items per run.")] = 16,
    steps: Annotated[int, typer.Option(help="Teacher steps n.")] = 50,
    key_steps: Annotated[int, typer.Option(help="Key steps m.")] = 5,
    frames: Annotated[int, typer.Option(help="Frames.")] = 17,
    size: Annotated[int, typer.Option(help="Height = width.")] = 64,
    batch: Annotated[int, typer.Option(help="Items per teacher call.")] = 4,
    shard_size: Annotated[int, typer.Option(help="Items per shard.")] = 8,
    guidance: Annotated[float, typer.Option(help="Teacher CFG scale.")] = 5.0,
    repeats: Annotated[int, typer.Option(help="Interleaved repeats of plain sampling and synthesis.")] = 5,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16.")] = "auto",
    work: Annotated[Path, typer.Option(help="Scratch folder (teacher, prompts, datasets).")] = Path("bench-synvid"),
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the numbers.")] = Path("synvid-bench.json"),
    table_of: Annotated[Path | None, typer.Option("--table", help="Print the table of this JSON and exit.")] = None,
):
    """Print the table and write the JSON."""
    if table_of is not None:
        print(table(json.loads(table_of.read_text())))
        return
    work.mkdir(parents=True, exist_ok=True)
    if teacher == "tiny":
        from accvideo.models.tiny import save_tiny_wan

        model_dir = work / "tiny-teacher"
        if not (model_dir / "model_index.json").is_file():
            save_tiny_wan(model_dir, seed=0, num_layers=2)
    else:
        model_dir = resolve_model(teacher)
    prompts = write_prompts(work / "prompts.txt", world_prompts(items, "train", 0))
    dev = resolve_device(device)
    adapter = load_adapter(model_dir, device=dev, dtype=resolve_dtype(dtype, dev))

    def config(store: str, out: Path) -> SynthConfig:
        return SynthConfig(
            teacher=str(model_dir),
            prompts=str(prompts),
            out=str(out),
            steps=steps,
            key_steps=key_steps,
            guidance=guidance,
            frames=frames,
            height=size,
            width=size,
            batch=batch,
            shard_size=shard_size,
            store=store,
            device=device,
            dtype=dtype,
        )

    plain_sampling(adapter, config("key", work / "warmup"))  # first calls allocate and pick kernels
    plain, synth_loop, synth_total = [], [], []
    for r in range(repeats):
        out = work / f"key-{r}"
        shutil.rmtree(out, ignore_errors=True)
        for first in (r % 2 == 0, r % 2 == 1):  # alternate which goes first: a loaded machine drifts
            if first:
                plain.append(plain_sampling(adapter, config("key", out)))
            else:
                t0 = time.perf_counter()
                summary = synthesize(config("key", out), adapter=adapter, progress=False)
                synth_total.append(time.perf_counter() - t0)
                synth_loop.append(summary["seconds_generate"])
    all_dir = work / "all"
    shutil.rmtree(all_dir, ignore_errors=True)
    synthesize(config("all", all_dir), adapter=adapter, progress=False)

    shape = adapter.latent_shape(frames, size, size)
    latent_bytes = 4 * torch.Size(shape).numel()
    key_b, all_b = dataset_bytes(work / "key-0") / items, dataset_bytes(all_dir) / items
    med = statistics.median
    result = {
        "teacher": teacher,
        "device": str(dev),
        "dtype": str(adapter.dtype).removeprefix("torch."),
        "items": items,
        "steps": steps,
        "key_steps": key_steps,
        "frames": frames,
        "size": size,
        "batch": batch,
        "shard_size": shard_size,
        "guidance": guidance,
        "repeats": repeats,
        "latent_shape": list(shape),
        "bytes_per_item_key": round(key_b),
        "bytes_per_item_all": round(all_b),
        "bytes_ratio": round(key_b / all_b, 4),
        "expected_ratio": round((key_steps + 1) / (steps + 1), 4),
        "latent_bytes_ratio": round((key_steps + 1) / (steps + 1), 4),
        "latent_bytes": latent_bytes,
        "plain_items_per_s": round(items / med(plain), 3),
        "synth_items_per_s": round(items / med(synth_loop), 3),
        "synth_items_per_s_end_to_end": round(items / med(synth_total), 3),
        "throughput_ratio": round(med(plain) / med(synth_loop), 4),
        "throughput_ratio_end_to_end": round(med(plain) / med(synth_total), 4),
        "seconds": {"plain": plain, "synth_loop": synth_loop, "synth_total": synth_total},
    }
    print(table(result))
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {json_out}")


if __name__ == "__main__":
    typer.run(main)
