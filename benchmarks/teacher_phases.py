"""Seconds per phase of training the built-in teacher (docs/builtin.md's table), and whether a retrain reproduces
the shipped VAE.

    python benchmarks/teacher_phases.py --out /tmp/teacher_phases --json benchmarks/results/teacher_phases_cpu.json
    python benchmarks/teacher_phases.py --table benchmarks/results/teacher_phases_cpu.json

Runs `accvideo teacher train --threads 1` with the shipped teacher's settings (the defaults) through its first two
phases, the VAE and the encoding of the training clips, as they ran for the shipped teacher, and only `--steps`
transformer steps (the shipped run's 11,000 took the seconds its accvideo_teacher.yaml records, which the table
quotes). The phases' seconds come from the run's own record; its VAE is compared tensor by tensor with the shipped
one. Writes JSON; `--table JSON` prints the Markdown table of a saved result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from accvideo.teacher.config import TeacherConfig

ASSET = Path(__file__).resolve().parents[1] / "src" / "accvideo" / "assets" / "builtin"
VAE_FILE = Path("vae") / "diffusion_pytorch_model.safetensors"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def same_tensors(a: Path, b: Path) -> dict:
    x, y = load_file(str(a)), load_file(str(b))
    differ = sorted(k for k in x.keys() & y.keys() if not torch.equal(x[k], y[k]))
    return {
        "tensors": len(x),
        "same_names": x.keys() == y.keys(),
        "differ": differ,
        "equal": not differ and x.keys() == y.keys(),
    }


def measure(out: Path, steps: int, extra: list[str]) -> dict:
    teacher = out / "teacher"
    args = ["teacher", "train", "--out", str(teacher), "--threads", "1", f"steps={steps}", *extra]
    cmd = [sys.executable, "-m", "accvideo", *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    wall = time.perf_counter() - t0
    record = yaml.safe_load((teacher / "accvideo_teacher.yaml").read_text())
    shipped = yaml.safe_load((ASSET / "accvideo_teacher.yaml").read_text())
    default = dataclasses.asdict(TeacherConfig())  # a setting added since the shipped run ran at its default
    other = sorted(k for k in default if k != "steps" and record.get(k) != shipped.get(k, default[k]))
    return {
        "command": "accvideo " + " ".join(args),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "wall_seconds": round(wall, 1),
        "vae_seconds": record["vae_seconds_this_run"],
        "encode_seconds": record["encode_seconds_this_run"],
        "settings_unlike_the_shipped_run": other,  # besides steps
        "transformer_steps": steps,
        "transformer_seconds": record["transformer_seconds_this_run"],
        "vae_psnr_db": record["vae_psnr_db"],
        "shipped": {
            "transformer_steps": shipped["steps"],
            "transformer_seconds": shipped["transformer_seconds_this_run"],
            "vae_psnr_db": shipped["vae_psnr_db"],
        },
        "vae_vs_shipped": same_tensors(teacher / VAE_FILE, ASSET / VAE_FILE),
    }


WHAT = {
    "vae": "3000 single-frame steps (lr 2e-3) then 1000 steps on 9-frame 32x32 crops (lr 1e-3), signal-preserving "
    "init (`teacher/vae.py`)",
    "encode": "4000 training clips (train-split combinations) rendered and encoded once",
    "transformer": "flow matching at shift 3, 11000 steps of batch 32, AdamW 1e-3 with 200 warm-up steps and cosine "
    "decay, caption dropout 0.1, EMA 0.999",
}


def table(r: dict) -> str:
    s, same = r["shipped"], r["vae_vs_shipped"]
    vae = (
        "every tensor equals the shipped VAE's"
        if same["equal"]
        else (f"{len(same['differ'])} of {same['tensors']} tensors differ from the shipped VAE's")
    )
    if r["settings_unlike_the_shipped_run"]:
        raise SystemExit(f"not the shipped settings: {r['settings_unlike_the_shipped_run']}")
    total = r["vae_seconds"] + r["encode_seconds"] + s["transformer_seconds"]
    rows = [
        "| phase | what | seconds | measured |",
        "|---|---|---|---|",
        f"| 1. VAE | {WHAT['vae']} | {r['vae_seconds']:.0f} | retrained ({vae}; {r['vae_psnr_db']} dB PSNR) |",
        f"| 2. encode | {WHAT['encode']} | {r['encode_seconds']:.0f} | retrained |",
        f"| 3. transformer | {WHAT['transformer']} | {s['transformer_seconds']:.0f} | the shipped run's record "
        f"({s['transformer_steps']} steps) |",
        f"| total | | {total:.0f} ({total / 60:.0f} min) | |",
    ]
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/teacher_phases"))
    p.add_argument("--steps", type=int, default=20, help="transformer steps of the retrain")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("settings", nargs="*", help="key=value settings for a smoke run (then the VAE differs)")
    p.add_argument("--table", type=Path, default=None, help="print the table of a saved result and stop")
    a = p.parse_args()
    if a.table:
        print(table(json.loads(a.table.read_text())))
        return
    result = measure(a.out, a.steps, a.settings)
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
