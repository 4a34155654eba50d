"""Distillation throughput on the CPU: trajectory samples a second and peak memory of `accvideo distill` for full
and LoRA students, with and without the adversarial stage, on two small teachers (docs/distill.md's table).

    python benchmarks/distill_throughput.py --out runs/throughput --json benchmarks/results/distill_throughput_cpu.json
    python benchmarks/distill_throughput.py --table benchmarks/results/distill_throughput_cpu.json

Teachers: the tests' tiny random Wan (3 blocks x 24 wide) on 9x32x32 clips, and the built-in model (4 blocks x 128
wide) on its 17x64x64 clips. Each makes one SynVid of `--items` trajectories (10 Euler steps, 5 key steps); every
row is then one `accvideo distill` process on one thread (OMP_NUM_THREADS=1), run alone, one after another.
samples/s is summary.json's `samples_per_s` (key steps x trajectories over the whole training loop, the first
iteration included); maxrss is the process's peak resident memory (os.wait4), imports and pipeline included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from accvideo.core.files import write_json_atomic

SYNVID = ["--steps", "10", "--key-steps", "5", "--guidance", "3", "--device", "cpu"]
COMMON = ["device=cpu", "probe_every=0", "checkpoint_every=1000"]
# teacher -> (clip settings, batch, LoRA rank, rows: (name, extra settings))
PLANS = {
    "tiny test Wan (3 blocks x 24 wide)": (
        ["--frames", "9", "--size", "32x32"],
        2,
        4,
        [("full, adv", []), ("LoRA, adv", ["lora_rank=4"]), ("full, adv=off", ["adv=off"])],
    ),
    "built-in (4 blocks x 128 wide)": (
        ["--frames", "17", "--size", "64x64"],
        4,
        16,
        [
            ("full, adv", []),
            ("LoRA, adv", ["lora_rank=16"]),
            ("full, adv=off", ["adv=off"]),
            ("LoRA, adv=off", ["lora_rank=16", "adv=off"]),
            ("full, adv, grad checkpointing", ["grad_checkpointing=on"]),
        ],
    ),
}


def run(args: list[str]) -> int:
    """Run `python -m accvideo ARGS` on one thread; its peak resident memory in MiB (it must succeed)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "accvideo", *args], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: accvideo {' '.join(args)}")
    return round(usage.ru_maxrss / 1024)  # Linux: KiB


def measure(out: Path, items: int, iterations: int) -> dict:
    from accvideo.models.tiny import save_tiny_wan

    out.mkdir(parents=True, exist_ok=True)
    tiny = out / "tiny_wan"
    if not (tiny / "model_index.json").is_file():
        save_tiny_wan(tiny, seed=0, num_layers=3)
    prompts = out / "prompts.txt"
    if not prompts.is_file():
        run(["prompts", "--n", str(items), "--out", str(prompts)])
    rows = []
    for t, (teacher, (clip, batch, rank, variants)) in enumerate(PLANS.items()):
        path = str(tiny) if t == 0 else "builtin"
        data = out / f"synvid{t}"
        run(["synthesize", "--teacher", path, "--prompts", str(prompts), "--out", str(data), *SYNVID, *clip])
        for v, (name, extra) in enumerate(variants):
            run_dir = out / f"run{t}_{v}"
            settings = [f"iterations={iterations}", f"batch={batch}", *COMMON, *extra]
            maxrss = run(["distill", "--teacher", path, "--data", str(data), "--out", str(run_dir), *settings])
            summary = json.loads((run_dir / "summary.json").read_text())
            rate = summary["samples_per_s"]
            row = {"teacher": teacher, "clip": "x".join(clip[1::2]), "run": f"{name}, batch {batch}"}
            row["run"] = row["run"].replace("LoRA", f"LoRA r{rank}")
            row |= {"samples_per_s": rate, "it_per_s": round(rate / (5 * batch), 3), "maxrss_mib": maxrss}
            rows.append(row)
            print(row, flush=True)
    return {
        "command": " ".join(["python benchmarks/distill_throughput.py", *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "items": items,
        "iterations": iterations,
        "rows": rows,
    }


def table(result: dict) -> str:
    lines = ["| teacher | clip | run | samples/s | it/s | maxrss (MiB) |", "|---|---|---|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['teacher']} | {r['clip']} | {r['run']} | {r['samples_per_s']:.1f} | {r['it_per_s']:.2f} "
            f"| {r['maxrss_mib']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/throughput")
    parser.add_argument("--items", type=int, default=16, help="trajectories in each SynVid")
    parser.add_argument("--iterations", type=int, default=20, help="distill iterations of each row")
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("--table", help="print the table of a saved result and stop")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return
    result = measure(Path(args.out), args.items, args.iterations)
    print(table(result))
    if args.json:
        write_json_atomic(Path(args.json), result)


if __name__ == "__main__":
    main()
