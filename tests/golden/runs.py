"""The golden runs: numbers that a refactor must not change, computed through the command line.

`python tests/golden/runs.py OUT.json` runs a tiny synthesis, a full and a LoRA distillation on it, and the quick
demo on the built-in model, and writes their numbers: SHA-256 digests of every stored SynVid tensor, every logged
per-key-step loss (as exact float reprs), and the demo's metrics. tests/test_golden.py reruns it in a subprocess
with one thread (so float reductions happen in one order) and compares, bit for bit, with the recorded numbers of
the kind of CPU it runs on (tests/golden/golden*.json: float kernels, and so the last bits, differ by CPU).
Regenerate the file only for a change that is meant to change results, and say so in the commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
import tempfile
from pathlib import Path

PROMPTS = ["a red circle moving left", "a blue square", "a green star moving up", "a yellow triangle spinning"]
DISTILL = ["batch=2", "lr=1e-4", "head_lr=1e-4", "head_channels=8", "device=cpu", "iterations=3"]


def accvideo(*args: str) -> None:
    """One command, in this process (one interpreter start for all of them)."""
    from accvideo.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"accvideo {' '.join(args)} exited with {exc.code}") from None


def synvid_digests(root: Path) -> dict[str, str]:
    from safetensors import safe_open

    digests = {}
    for shard in sorted(root.glob("*.safetensors")):
        with safe_open(str(shard), "pt") as f:
            for name in sorted(f.keys()):
                t = f.get_tensor(name).contiguous()
                digests[f"{shard.name}/{name}"] = hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]
    return digests


def losses(run: Path) -> list[dict]:
    keep = ("iteration", "samples", "traj_k", "g_k", "d_k")
    rows = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines() if line.strip()]
    return [{k: r[k] for k in keep} for r in rows]


def golden(work: Path) -> dict:
    from accvideo.models.tiny import save_tiny_wan

    teacher = save_tiny_wan(work / "teacher", seed=0, num_layers=3)
    (work / "p.txt").write_text("\n".join(PROMPTS) + "\n")
    data = work / "syn"
    accvideo(
        "synthesize",
        "--teacher",
        str(teacher),
        "--prompts",
        str(work / "p.txt"),
        "--out",
        str(data),
        "--steps",
        "6",
        "--key-steps",
        "3",
        "--frames",
        "5",
        "--size",
        "32x32",
        "--guidance",
        "3",
        "--shard-size",
        "2",
        "--batch",
        "2",
        "--device",
        "cpu",
    )
    result = {"synvid": synvid_digests(data)}
    for name, extra in (("distill_full", []), ("distill_lora", ["lora_rank=2"])):
        run = work / name
        accvideo("distill", "--teacher", str(teacher), "--data", str(data), "--out", str(run), *DISTILL, *extra)
        result[name] = losses(run)
    accvideo("demo", "--preset", "quick", "--out", str(work / "demo"))
    metrics = json.loads((work / "demo" / "report" / "metrics.json").read_text())
    scores = ("accuracy", "frechet_distance", "temporal_consistency", "steps", "guidance")
    result["demo_quick"] = {
        "eval_pairs": metrics["eval_pairs"],
        "results": {row: {k: r[k] for k in scores} for row, r in metrics["results"].items()},
    }
    return result


def main(out: str) -> None:
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        result = golden(Path(tmp))
    Path(out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
