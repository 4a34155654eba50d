"""Teacher variants side by side: train several transformer settings from one VAE and scored with ToyBench.

    python benchmarks/teacher_variants.py --base runs/teacher.work --out runs/variants --device cuda \
        --budget-s 450 --n 128 --variant old=steps=8000,lr=5e-4 --variant default= \
        --variant wide=batch=256,layers=6,heads=5,ffn_dim=640

Every variant reuses the base work folder's trained VAE and encoded clips (`vae.safetensors`,
`latents.safetensors`, from any `accvideo teacher train` run of the same world and VAE settings), so only the
transformer phase differs. The variants train at the same time as separate processes (on one GPU they share
it; on a CPU give each a thread). A variant still running after --budget-s is stopped and scored from the EMA
weights of its last checkpoint, with the step it reached in the table. Each finished or stopped variant is
scored with 50 and 5 Euler steps at CFG 5 on the same held-out pairs. Prints a table and writes JSON;
`--table JSON` prints a saved result's table.
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

SHARED = ("vae.safetensors", "latents.safetensors")


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, spec = text.partition("=")
    if not name:
        raise SystemExit(f"--variant {text!r}: expected NAME=key=value,key=value (or NAME= for the defaults)")
    return name, [kv for kv in spec.split(",") if kv]


def pipeline_from_checkpoint(work: Path, out: Path) -> int:
    """Save the EMA weights of a stopped variant's last checkpoint as a pipeline folder; returns its step."""
    from accvideo.core.config import load_config
    from accvideo.teacher.config import TeacherConfig
    from accvideo.teacher.state import load_state
    from accvideo.teacher.train import encode_dataset, pipeline_for_data
    from accvideo.teacher.vae import load_trained_vae

    cfg = load_config(TeacherConfig, work / "config.yaml")
    state = load_state(work / "transformer_state.pt")
    if state is None:
        return 0
    vae = load_trained_vae(cfg, work / "vae.safetensors")
    data = encode_dataset(cfg, vae, work)
    pipe = pipeline_for_data(cfg, vae, data)
    pipe.transformer.load_state_dict({k: v.to("cpu") for k, v in state["ema"].items()})
    pipe.save_pretrained(str(out), safe_serialization=True)
    return int(state["step"])


def variants_table(rows: list[dict]) -> str:
    """The Markdown table of the variants' rows (a saved JSON's `variants`)."""
    lines = [
        "| variant | settings | train s | stopped at | acc 50 | FD 50 | acc 5 | FD 5 | shape 50 | motion 50 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, b = r.get("steps50"), r.get("steps5")
        cells = (
            [
                f"{a['accuracy']['mean']:.3f}",
                f"{a['frechet_distance']:.1f}",
                f"{b['accuracy']['mean']:.3f}",
                f"{b['frechet_distance']:.1f}",
                f"{a['accuracy']['shape']:.3f}",
                f"{a['accuracy']['motion']:.3f}",
            ]
            if a and b
            else ["-"] * 6
        )
        lines.append(
            f"| {r['name']} | {' '.join(r['overrides']) or 'defaults'} | {r['seconds']:.0f} | "
            f"{r['stopped_at_step'] or '-'} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, help="work folder with vae.safetensors + latents (required to train)")
    ap.add_argument("--out", type=Path, help="(required to train)")
    ap.add_argument("--variant", action="append", help="NAME=key=value,... (TeacherConfig; required to train)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budget-s", type=float, default=3600.0, help="wall-clock seconds for all training")
    ap.add_argument("--n", type=int, default=128, help="held-out prompt and seed pairs to score")
    ap.add_argument("--classifier", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per variant process")
    ap.add_argument("--json", type=Path, default=None, help="[OUT/variants.json]")
    ap.add_argument("--table", type=Path, default=None, help="print the table of a saved JSON and stop")
    args = ap.parse_args()
    if args.table:
        print(variants_table(json.loads(args.table.read_text())["variants"]))
        return
    if not (args.base and args.out and args.variant):
        ap.error("--base, --out and --variant are required to train (or --table JSON)")
    missing = [n for n in SHARED if not (args.base / n).is_file()]
    if missing:
        raise SystemExit(f"{args.base} lacks {', '.join(missing)}: run `accvideo teacher train` there first")

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    procs, t0 = {}, time.perf_counter()
    for name, overrides in map(parse_variant, args.variant):
        work = args.out / f"{name}.work"
        work.mkdir(parents=True, exist_ok=True)
        for n in SHARED:
            if not (work / n).exists():
                shutil.copy(args.base / n, work / n)
        cmd = [
            sys.executable,
            "-m",
            "accvideo",
            "teacher",
            "train",
            "--out",
            str(args.out / name),
            "--work",
            str(work),
            "--device",
            args.device,
            "--threads",
            str(args.threads),
            *overrides,
        ]
        log = (args.out / f"{name}.log").open("w")
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), overrides)
        print(f"started {name}: {' '.join(overrides) or 'defaults'}", flush=True)

    finished: dict[str, dict] = {}
    while len(finished) < len(procs):
        time.sleep(2)
        elapsed = time.perf_counter() - t0
        for name, (proc, overrides) in procs.items():
            if name in finished:
                continue
            if proc.poll() is None and elapsed < args.budget_s:
                continue
            stopped = proc.poll() is None
            if stopped:
                proc.terminate()
                proc.wait()
            folder, step = args.out / name, None
            if stopped or proc.returncode != 0:
                step = pipeline_from_checkpoint(args.out / f"{name}.work", folder) or None
            finished[name] = {
                "name": name,
                "overrides": overrides,
                "seconds": round(elapsed, 1),
                "stopped_at_step": step if stopped else None,
                "returncode": proc.returncode,
                "model": str(folder) if (folder / "model_index.json").is_file() else None,
            }
            print(
                f"{name}: {'stopped' if stopped else 'finished'} after {elapsed:.0f} s"
                + (f" at step {step}" if stopped else ""),
                flush=True,
            )

    scored = []
    for name, row in finished.items():
        if row["model"] is None:
            scored.append(row)
            continue
        js = args.out / f"{name}.toybench.json"
        cmd = [
            sys.executable,
            str(Path(__file__).with_name("toybench.py")),
            "--n",
            str(args.n),
            "--device",
            args.device,
            "--json",
            str(js),
            "--run",
            f"{name}-50={row['model']}:50:5",
            "--run",
            f"{name}-5={row['model']}:5:5",
        ]
        if args.classifier:
            cmd += ["--classifier", str(args.classifier)]
        scored.append((row, js, subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)))
    rows = []
    for item in scored:
        if isinstance(item, dict):
            rows.append(item)
            continue
        row, js, proc = item
        proc.wait()
        if proc.returncode == 0:
            runs = json.loads(js.read_text())["runs"]
            row |= {
                f"steps{r['steps']}": {"accuracy": r["accuracy"], "frechet_distance": r["frechet_distance"]}
                for r in runs
            }
        rows.append(row)

    table = variants_table(rows)
    print(table)
    out = args.json or args.out / "variants.json"
    out.write_text(json.dumps({"device": args.device, "n": args.n, "variants": rows, "table": table}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
