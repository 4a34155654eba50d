"""Many clips: `accvideo sample --prompts` (the model loaded once, rows sampled `--batch` at a time) against one
`accvideo sample` per prompt, side by side in one process on the same prompts, seeds and settings.

    python benchmarks/sample_prompts.py --steps 5 --n 16 --json benchmarks/results/sample_prompts_cpu.json

Each way runs in this process through the command line's own entry (`accvideo.cli.main`), so the per-clip way
pays the model load and the settings check every clip, as a shell loop over `accvideo sample` would (without the
interpreter start and imports, which a shell loop also pays: these are lower bounds of its cost). Prints a Markdown
table; `--json` writes it (seconds in all, seconds a clip, and the speed-up over one command a clip); `--table JSON`
prints the table of a saved result (docs/sample.md's).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def run(args: list[str]) -> float:
    """Seconds of one `accvideo ARGS` in this process; a failure raises."""
    from accvideo.cli import main

    t0 = time.perf_counter()
    try:
        main(args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"accvideo {' '.join(args)} exited {exc.code}") from None
    return time.perf_counter() - t0


def measure(model: str, n: int, steps: int, batches: list[int], device: str, work: Path) -> dict:
    from accvideo.synthesize.prompts import read_prompts, write_prompts
    from accvideo.world import prompts as world_prompts

    prompts = work / "prompts.jsonl"
    write_prompts(prompts, world_prompts(n, "heldout", 0))
    items = read_prompts(prompts).items
    common = ["--model", model, "--steps", str(steps), "--device", device]
    rows = []
    t = 0.0
    for it in items:
        one = ["--prompt", it.prompt, "--seed", str(it.seed), "--out", str(work / f"{it.index}.mp4")]
        t += run(["sample", *common, *one])
    rows.append({"way": "one `accvideo sample` a clip", "batch": 1, "seconds": t})
    for b in batches:
        t = run(["sample", *common, "--prompts", str(prompts), "--batch", str(b), "--out", str(work / f"b{b}")])
        rows.append({"way": "`accvideo sample --prompts`", "batch": b, "seconds": t})
    for r in rows:
        r["seconds_a_clip"] = r["seconds"] / n
        r["speedup"] = rows[0]["seconds"] / r["seconds"]
    return {
        "model": model,
        "clips": n,
        "steps": steps,
        "device": device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rows": rows,
    }


def table(result: dict) -> str:
    lines = [
        f"{result['clips']} clips of `{result['model']}`, {result['steps']} steps, {result['device']} "
        f"({result['threads']} threads):",
        "",
        "| way | batch | seconds | seconds a clip | speed-up |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['way']} | {r['batch']} | {r['seconds']:.1f} | {r['seconds_a_clip']:.2f} | {r['speedup']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--n", type=int, default=16, help="clips")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", default="1,4,8", help="the --batch values of --prompts, comma-separated")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("--table", metavar="JSON", help="print the table of a result written before, and stop")
    a = parser.parse_args()
    if a.table:
        print(table(json.loads(Path(a.table).read_text())))
        return
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(a.model, a.n, a.steps, [int(b) for b in a.batch.split(",")], a.device, Path(tmp))
    print(table(result))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
