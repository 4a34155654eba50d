"""Same result however the work is split: each command's outputs under other batch sizes, micro-batches, process
counts and thread counts, against a reference configuration, by content.

    rm -rf /tmp/inv-clone && git clone -q . /tmp/inv-clone && \
        PYTHONPATH=/tmp/inv-clone/src python benchmarks/invariance.py --json benchmarks/results/invariance_cpu.json
    python benchmarks/invariance.py --only distill                 # one command
    python benchmarks/invariance.py --table benchmarks/results/invariance_cpu.json

The house promise (docs/ARCHITECTURE.md): every item has its own seed, so what a command writes does not depend on
how its work is batched or split over processes and threads (interruptions: benchmarks/kill_sweep.py, whose inputs,
launchers and `source` this reuses). Each command runs as a subprocess on the built-in model at a small size (a run
takes seconds), once in its reference configuration (the first variant, one process, OMP_NUM_THREADS=1), once more
unchanged (`rerun`: what varies between two identical runs is no finding), and once per variant (a setting changed,
torchrun with 2 gloo processes, or OMP_NUM_THREADS=2: `distill` has no threads flag, torch reads the variable).
For each variant and each compared output it records the largest absolute difference against the reference (tensors:
max |a-b| over every tensor of the output's files, in float64; clips: over the decoded frames, in uint8 levels; records:
over their numeric values, timings left out) and whether the output is bit-identical (every tensor equal, or every
file's bytes). `--json` is rewritten after each command (a cut-short run keeps what it measured; other commands'
entries of an existing file are kept); `--table JSON` prints a saved result's Markdown table (docs/scale-out.md's).
The whole run took about 7 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kill_sweep import MEASURED, Command, make_inputs, source  # benchmarks/kill_sweep.py, next to this file


@dataclass(frozen=True)
class Variant:
    """One configuration: `extra` appended to the command's line, under `processes` (2: torchrun) with
    OMP_NUM_THREADS=`threads`."""

    label: str
    extra: str = ""
    processes: int = 1
    threads: int = 1


@dataclass(frozen=True)
class Output:
    """One compared output: `kind` tensors (safetensors files), frames (MP4s, decoded), bytes (files' bytes),
    npy (arrays) or records (JSON / JSON lines); `pattern` a glob under the run's folder; `keys` keeps the
    tensors whose name contains it (all when empty); `skip` leaves out the record leaves whose path contains one of
    its strings (a record of the settings, which differ by design)."""

    name: str
    kind: str
    pattern: str
    keys: str = ""
    skip: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    line: str  # {in}: the shared inputs (kill_sweep.make_inputs), {out}: the variant's folder
    needs: tuple[str, ...]
    outputs: tuple[Output, ...]
    variants: tuple[Variant, ...]  # the first is the reference


RERUN = "rerun (same settings)"  # the reference's settings again
THREADS2 = "OMP_NUM_THREADS=2"
SYNTHESIZE = "synthesize --teacher builtin --prompts {in}/prompts.txt --out {out}/data --steps 20 shard_size=3"
DISTILL = (
    "distill --teacher builtin --data {in}/data --out {out}/run iterations=4 batch=4 checkpoint_every=100 probe_every=0"
)
DISTILL_OUTPUTS = (
    Output("student weights", "tensors", "run/student/**/*.safetensors"),
    Output("losses.jsonl", "records", "run/losses.jsonl"),
)
DISTILL_VARIANTS = (
    Variant("micro_batch=4 (reference)", "micro_batch=4"),
    Variant(RERUN, "micro_batch=4"),
    Variant("micro_batch=2", "micro_batch=2"),
    Variant("micro_batch=1", "micro_batch=1"),
    Variant("torchrun 2 processes, parallel=ddp", "parallel=ddp", processes=2),
    Variant("torchrun 2 processes, parallel=fsdp", "parallel=fsdp", processes=2),
    Variant(THREADS2, "micro_batch=4", threads=2),
)
SAMPLE_OUTPUTS = (
    Output("clips (decoded frames)", "frames", "clips/*.mp4"),
    Output("clips (MP4 bytes)", "bytes", "clips/*.mp4"),
)
CASES = {
    "synthesize": Case(
        SYNTHESIZE,
        ("prompts",),
        (
            Output("latents", "tensors", "data/*.safetensors", keys="latents"),
            Output("prompt embeddings", "tensors", "data/*.safetensors", keys="prompt_embeds"),
        ),
        (
            Variant("--batch 1 (reference)", "--batch 1"),
            Variant(RERUN, "--batch 1"),
            Variant("--batch 2", "--batch 2"),
            Variant("--batch 3", "--batch 3"),
            Variant("torchrun 2 processes", "--batch 1", processes=2),
            Variant(THREADS2, "--batch 1", threads=2),
        ),
    ),
    "distill": Case(DISTILL, ("data",), DISTILL_OUTPUTS, DISTILL_VARIANTS),
    "distill-lora": Case(f"{DISTILL} --lora-rank 4", ("data",), DISTILL_OUTPUTS, DISTILL_VARIANTS),
    "sample-prompts": Case(
        "sample --model {in}/run --prompts {in}/prompts.txt --out {out}/clips",
        ("prompts", "run"),
        SAMPLE_OUTPUTS,
        (
            Variant("--batch 1 (reference)", "--batch 1"),
            Variant(RERUN, "--batch 1"),
            Variant("--batch 2", "--batch 2"),
            Variant("--batch 4", "--batch 4"),
            Variant("torchrun 2 processes", "--batch 1", processes=2),
            Variant("torchrun 2 processes, --batch 2", "--batch 2", processes=2),
            Variant(THREADS2, "--batch 1", threads=2),
        ),
    ),
    "evaluate": Case(
        "evaluate --model {in}/run --prompts 8 --video-format npy --out {out}/eval",
        ("run",),
        (
            Output("clips (npy frames)", "npy", "eval/videos/*.npy"),
            Output("metrics.json (scores; not its source record)", "records", "eval/metrics.json", skip=("/source/",)),
        ),
        (
            Variant("--batch-size 1 (reference)", "--batch-size 1"),
            Variant(RERUN, "--batch-size 1"),
            Variant("--batch-size 2", "--batch-size 2"),
            Variant("--batch-size 4", "--batch-size 4"),
            Variant(THREADS2, "--batch-size 1", threads=2),
        ),
    ),
    "decoder": Case(
        "decoder distill --teacher builtin --data {in}/data --out {out}/decoder iterations=40 checkpoint_every=100 "
        "width=16 holdout=2",
        ("data",),
        (
            Output("decoder weights", "tensors", "decoder/decoder/*.safetensors"),
            Output("targets (VAE decodes)", "tensors", "decoder/targets/*.safetensors"),
            Output("losses.jsonl", "records", "decoder/losses.jsonl"),
        ),
        (
            Variant("--threads 1 (reference)", "--threads 1"),
            Variant(RERUN, "--threads 1"),
            Variant("--threads 2", "--threads 2", threads=2),
        ),
    ),
}


def run_variant(case: Case, variant: Variant, inputs: Path, out: Path) -> dict:
    """Run one configuration into `out` (made afresh); its command line, seconds and exit code."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = Command(f"{case.line} {variant.extra}".strip(), "", case.needs, variant.processes)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(variant.threads))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd.argv(inputs, out), env=env, capture_output=True, text=True)
    launcher = "torchrun --standalone --nproc_per_node 2 -m accvideo" if variant.processes == 2 else "accvideo"
    record = {
        "variant": variant.label,
        "command": f"OMP_NUM_THREADS={variant.threads} {launcher} {cmd.line}",
        "seconds": round(time.perf_counter() - t0, 1),
        "exit": proc.returncode,
    }
    if proc.returncode != 0:
        record["stderr_tail"] = proc.stderr.strip().splitlines()[-3:]
    return record


def load_tensors(folder: Path, output: Output) -> dict:
    from safetensors.torch import load_file

    tensors = {}
    for path in sorted(folder.glob(output.pattern)):
        for key, t in load_file(path).items():
            if output.keys in key:
                tensors[f"{path.relative_to(folder)}:{key}"] = t
    return tensors


def load_arrays(folder: Path, output: Output) -> dict:
    """Per file of the output: decoded frames (uint8 arrays), an array, or the bytes."""
    import numpy as np

    paths = sorted(folder.glob(output.pattern))
    if output.kind == "frames":
        from accvideo.core.video import read_video

        return {p.name: read_video(p) for p in paths}
    if output.kind == "npy":
        return {p.name: np.load(p) for p in paths}
    return {p.name: p.read_bytes() for p in paths}


# keys whose values name the variant's own folder (each variant writes at its own path)
WHERE = ("saved_to",)


def flatten(value, prefix: str = "") -> dict:
    """A record's leaves by path, keys in kill_sweep.MEASURED (timings, memory) and WHERE left out."""
    if isinstance(value, dict):
        items = [(k, v) for k, v in value.items() if not any(m in str(k) for m in (*MEASURED, *WHERE))]
        return {p: leaf for k, v in items for p, leaf in flatten(v, f"{prefix}/{k}").items()}
    if isinstance(value, list):
        return {p: leaf for i, v in enumerate(value) for p, leaf in flatten(v, f"{prefix}[{i}]").items()}
    return {prefix: value}


def load_records(folder: Path, output: Output) -> dict:
    leaves = {}
    for path in sorted(folder.glob(output.pattern)):
        text = path.read_text()
        rows = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else None
        leaves.update(flatten(rows if rows is not None else json.loads(text), path.name))
    return {k: v for k, v in leaves.items() if not any(s in k for s in output.skip)}


def magnitude(a) -> float | None:
    """The largest absolute value of a leaf (the scale its differences are read against); None for bytes, text and
    integer counts."""
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor):
        return a.double().abs().max().item() if a.numel() else 0.0
    if isinstance(a, np.ndarray):
        return float(np.abs(a.astype(np.float64)).max()) if a.size else 0.0
    return abs(a) if isinstance(a, float) else None  # counts (iteration, samples) are no scale


def diff(a, b) -> tuple[float | None, bool]:
    """Largest absolute difference of two leaves (None for bytes or text, which are only equal or not) and
    whether they are bit-identical."""
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        if a.shape != b.shape:
            return float("inf"), False
        return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0, same
    if isinstance(a, np.ndarray):
        if a.shape != b.shape:
            return float("inf"), False
        return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()), bool(np.array_equal(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)), a == b
    return None, a == b


def compare(ref: Path, got: Path, output: Output) -> dict:
    """One output of a variant against the reference's: max |diff| over its leaves, bit-identical, how many
    leaves were compared and which ones exist on one side only or differ without a size (bytes, text)."""
    load = {"tensors": load_tensors, "records": load_records}.get(output.kind, load_arrays)
    a, b = load(ref, output), load(got, output)
    if not a:
        return {"error": f"the reference wrote nothing matching {output.pattern}"}
    worst, worst_key, identical, unequal = 0.0, None, a.keys() == b.keys(), []
    scale = max((m for m in map(magnitude, a.values()) if m is not None), default=None)
    for key in sorted(a.keys() & b.keys()):
        d, same = diff(a[key], b[key])
        identical = identical and same
        if d is None:
            unequal += [] if same else [key]
        elif d > worst or worst_key is None:
            worst, worst_key = max(worst, d), key
    sized = output.kind != "bytes"
    result = {"max_abs_diff": worst if sized else None, "reference_max_abs": scale, "identical": identical}
    result.update(compared=len(a), largest_at=worst_key if sized else None)
    one_side = sorted(a.keys() ^ b.keys())
    if one_side or unequal:
        result.update(one_side_only=one_side[:10], unequal=unequal[:10], n_unequal=len(unequal))
    return result


def measure(name: str, case: Case, inputs: Path, work: Path) -> dict:
    folders, runs = [], []
    for i, variant in enumerate(case.variants):
        out = work / name / f"v{i}"
        record = run_variant(case, variant, inputs, out)
        print(f"{name}: {variant.label}: exit {record['exit']}, {record['seconds']} s", file=sys.stderr)
        if record["exit"] == 0 and runs and runs[0]["exit"] == 0:
            record["outputs"] = {o.name: compare(folders[0], out, o) for o in case.outputs}
        folders.append(out)
        runs.append(record)
    shutil.rmtree(work / name, ignore_errors=True)
    return {"reference": runs[0], "variants": runs[1:], "source": source()}


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return "0" if value == 0 else f"{value:.3g}"


def table(result: dict) -> str:
    """One row per command, variant and compared output."""
    lines = [
        "| command | variant (against the reference) | compared output (leaves) | max \\|diff\\| | "
        "max \\|reference\\| | bit-identical |",
        "|---|---|---|---|---|---|",
    ]
    order = list(CASES)
    for name, r in sorted(result["commands"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
        head = f"{name} (reference: {r['reference']['variant'].replace(' (reference)', '')})"
        for v in r["variants"]:
            if v["exit"] != 0 or "outputs" not in v:
                lines.append(f"| {head} | {v['variant']} | (exit {v['exit']}: not compared) | - | - | - |")
                continue
            for output, c in v["outputs"].items():
                if "error" in c:
                    lines.append(f"| {head} | {v['variant']} | {output}: {c['error']} | - | - | - |")
                    continue
                same = "yes" if c["identical"] else f"no ({c['n_unequal']} differ)" if c.get("n_unequal") else "no"
                diff_ = fmt(c["max_abs_diff"])
                scale = fmt(c.get("reference_max_abs"))
                lines.append(f"| {head} | {v['variant']} | {output} ({c['compared']}) | {diff_} | {scale} | {same} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default=None, help=f"comma-separated, of {', '.join(CASES)} (default: all)")
    p.add_argument("--work", type=Path, default=None, help="the inputs and runs here (default: a temporary folder)")
    p.add_argument("--json", type=Path, default=None, help="write the results here (other commands' entries kept)")
    p.add_argument("--table", type=Path, default=None, help="print the table of a saved result and stop")
    a = p.parse_args()
    if a.table:
        print(table(json.loads(a.table.read_text())))
        return
    names = [v.strip() for v in (a.only or ",".join(CASES)).split(",") if v.strip()]
    unknown = [v for v in names if v not in CASES]
    if unknown:
        p.error(f"unknown command(s) {unknown}; choose from {', '.join(CASES)}")
    work = a.work or Path(tempfile.mkdtemp(prefix="invariance_"))
    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    make_inputs(inputs, {n for v in names for n in CASES[v].needs})
    result = {"argv": sys.argv[1:], "commands": {}}
    if a.json and a.json.is_file():
        result["commands"] = {k: v for k, v in json.loads(a.json.read_text())["commands"].items() if k not in names}
    for name in names:
        result["commands"][name] = measure(name, CASES[name], inputs, work)
        if a.json:
            a.json.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
