"""Start-up of a distillation on CPU (issue 18): peak host memory of the student/teacher pair, 1 process loading it
whole against 2 gloo processes building it on the meta device, sharding it (FSDP2) and reading each its own rows;
and the seconds the teacher identity takes on that multi-GB folder (sampled) against hashing every byte.

    python benchmarks/startup.py --layers 12 --out /tmp/startup      # a random Wan 1,536 wide, 12 blocks (2.2 GiB)

The teacher is bf16 and the student float32, as `accvideo distill` holds them on a GPU (on a CPU a float32 teacher
would be read zero-copy from the mmapped file, which hides what the start-up allocates).

Writes OUT/startup.json and prints a Markdown table; `--json PATH` copies the JSON (benchmarks/results/). The folder is
deleted afterwards unless --keep. `--table JSON` prints the table of a saved result (docs/scale-out.md's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

CPU = torch.device("cpu")


def memory_gib() -> dict[str, float]:
    """This process's memory from /proc (Linux): peak resident (VmHWM, reset by exec, unlike ru_maxrss which a child
    inherits), resident now, and its anonymous part (tensors; the rest is file pages such as mmapped weights)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            fields[key] = round(int(value.split()[0]) / 2**20, 3)
    return fields


def write_teacher(folder: Path, layers: int) -> int:
    """A Wan 2.1 pipeline whose transformer has Wan2.1-1.3B's width (12 heads x 128, ffn 8,960) and `layers` blocks."""
    from accvideo.bench.configs import wan_builder

    text = dict(d_model=4096, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=256, is_encoder_decoder=False)
    build = wan_builder(dim_heads=12, layers=layers, ffn=8960, text=text, vae=dict(base_dim=8, z_dim=16), max_length=32)
    torch.manual_seed(0)
    adapter = build(CPU, torch.float32)
    adapter.pipe.save_pretrained(str(folder), safe_serialization=True)
    return sum(p.numel() for p in adapter.transformer.parameters())


def worker(teacher: Path, out: Path, dtype: torch.dtype) -> None:
    """One process of the start-up: the pair as `accvideo distill` builds it (full student, fsdp under torchrun)."""
    from accvideo.core import dist
    from accvideo.distill.config import DistillConfig
    from accvideo.distill.models import make_student, parallelize_student
    from accvideo.models import load_adapter
    from accvideo.models.base import LoadParts

    base = memory_gib()  # torch, diffusers and transformers imported
    with dist.distributed(CPU):
        world = dist.world_size()
        t0 = time.perf_counter()
        parts = LoadParts(text=False, vae=False, empty_transformer=world > 1)
        pair = make_student(load_adapter(teacher, device=CPU, dtype=dtype, parts=parts))
        cfg = DistillConfig(teacher=str(teacher), parallel="fsdp" if world > 1 else "auto", device="cpu")
        mode = parallelize_student(pair, cfg, CPU, world, teacher).mode
        seconds = time.perf_counter() - t0
        now = memory_gib()
        record = {"rank": dist.rank(), "world": world, "mode": mode, "seconds": round(seconds, 2)}
        record.update(
            imports_gib=base["VmRSS"],
            peak_gib=now["VmHWM"],
            added_peak_gib=round(now["VmHWM"] - base["VmRSS"], 3),
            held_anon_gib=round(now["RssAnon"] - base["RssAnon"], 3),  # tensors this process keeps
            held_file_gib=now["RssFile"],  # mmapped weights pages (page cache, reclaimable)
        )
        (out / f"rank{dist.rank()}-of-{world}.json").write_text(json.dumps(record))
        dist.barrier()


MODES = {
    "none": "none: loaded whole (`from_pretrained`, then the float32 copy)",
    "fsdp": "fsdp: meta device, sharded, each rank reads its rows",
}


def table(result: dict) -> str:
    """docs/scale-out.md's table: one row a launch, its ranks' figures joined by ' / '."""
    lines = [
        f"transformer {result['transformer_params'] / 1e6:.0f}M parameters, folder {result['folder_gib']:.2f} GiB; "
        f"pair ({result['teacher_dtype']} teacher + float32 full student) {result['pair_whole_gib']:.2f} GiB whole",
        "",
        "| processes | mode | start-up (s) | tensors held per process (GiB) | peak resident per process (GiB) |",
        "|---|---|---:|---:|---:|",
    ]
    for world in sorted({r["world"] for r in result["processes"]}):
        ranks = sorted((r for r in result["processes"] if r["world"] == world), key=lambda r: r["rank"])

        def each(key: str, fmt: str, ranks=ranks) -> str:
            return " / ".join(f"{r[key]:{fmt}}" for r in ranks)

        lines.append(
            f"| {world} | {MODES.get(ranks[0]['mode'], ranks[0]['mode'])} | {each('seconds', '.1f')} "
            f"| {each('held_anon_gib', '.2f')} | {each('peak_gib', '.2f')} |"
        )
    lines.append("")
    lines += [f"teacher identity, {name}: {s} s" for name, s in result["identity_seconds"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--out", default="runs/startup")
    parser.add_argument("--json", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--dtype", default="bfloat16", help="the teacher's dtype (bf16: as distill runs on a GPU)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--table", help="print the table of a saved result (docs/scale-out.md's) and stop")
    a = parser.parse_args()
    if a.table:
        print(table(json.loads(Path(a.table).read_text())))
        return
    if a.worker:
        worker(Path(a.worker[0]), Path(a.worker[1]), getattr(torch, a.dtype))
        return
    from accvideo.models.identity import content_sha256, teacher_identity

    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    teacher = out / "teacher"
    params = write_teacher(teacher, a.layers)
    folder_gib = sum(p.stat().st_size for p in teacher.rglob("*") if p.is_file()) / 2**30
    timings = {}
    for name, fn in (("sampled identity (id2)", teacher_identity), ("every byte (sha256, before)", content_sha256)):
        t0 = time.perf_counter()
        fn(teacher)
        timings[name] = round(time.perf_counter() - t0, 3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    me = [str(Path(__file__).resolve()), "--dtype", a.dtype, "--worker", str(teacher), str(out)]
    subprocess.run([sys.executable, *me], env=env, check=True)
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *me],
        env=env,
        check=True,
    )
    ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    result = {
        "command": " ".join(["python", *sys.argv]),
        "torch": torch.__version__,
        "transformer_params": params,
        "folder_gib": round(folder_gib, 3),
        "teacher_dtype": a.dtype,
        "pair_whole_gib": round(params * (torch.finfo(getattr(torch, a.dtype)).bits // 8 + 4) / 2**30, 3),
        "identity_seconds": timings,
        "processes": ranks,
    }
    text = json.dumps(result, indent=1) + "\n"
    (out / "startup.json").write_text(text)
    if a.json:
        Path(a.json).write_text(text)
    print(table(result))
    if not a.keep:
        shutil.rmtree(teacher)


if __name__ == "__main__":
    main()
