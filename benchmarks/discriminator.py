"""Can the discriminator learn at all? Heads trained alone on frozen teacher features, one variant per row.

Real samples are SynVid key latents l[t'_k]; fakes are the naive teacher's own m-step solve over the same key
sigmas from other noises (the few-step sampler the student replaces), or, as a control, other trajectories of
the 50-step teacher itself (real vs real: any accuracy above 0.5 there is overfitting, not signal). Teacher
features are computed once per block; each variant trains a head on the train part and reports the balanced
accuracy on the held-out probe part, per key step k.

    python benchmarks/discriminator.py --data runs/probe5/synvid --out benchmarks/results/discriminator.json

Prints a markdown table and writes the JSON the table in docs/distill.md is made from.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from accvideo.core.runtime import batch_noise, resolve_model
from accvideo.distill.probe import naive_teacher_latents, probe_seed, train_head_alone
from accvideo.models import load_adapter
from accvideo.models.identity import teacher_identity
from accvideo.synthesize import SynVidDataset


@dataclass(frozen=True)
class Variant:
    name: str
    lr: float = 1e-4
    steps: int = 200
    batch: int = 8
    channels: int = 64
    input_norm: bool = True
    block: int | None = None  # None: the trainer's default block per key step
    fakes: str = "naive"  # naive | student (a distilled student's own generations, --student) | teacher (control)


VARIANTS = [
    Variant("demo's head: lr 1e-4, 200 steps"),
    Variant("lr 1e-3, 200 steps", lr=1e-3),
    Variant("lr 1e-3, 600 steps", lr=1e-3, steps=600),
    Variant("lr 1e-3, 200 steps, 256 channels", lr=1e-3, channels=256),
    Variant("lr 1e-3, 200 steps, no input norm", lr=1e-3, input_norm=False),
    *[Variant(f"lr 1e-3, 200 steps, block {b}", lr=1e-3, block=b) for b in range(4)],
    Variant("control: real vs other real items, lr 1e-3, 600 steps", lr=1e-3, steps=600, fakes="teacher"),
    Variant("vs the student's generations, lr 1e-3, 200 steps", lr=1e-3, fakes="student"),
    Variant("vs the student's generations, lr 1e-3, 600 steps", lr=1e-3, steps=600, fakes="student"),
]


def load_all(dataset, n: int) -> tuple[torch.Tensor, dict]:
    items = [dataset[i] for i in range(n)]
    latents = torch.stack([it["latents"] for it in items])
    cond = {k: torch.stack([it["cond"][k] for it in items]) for k in items[0]["cond"]}
    return latents, cond


@torch.no_grad()
def features(adapter, latents, cond, sigmas, k_rows, block, batch=32) -> torch.Tensor:
    """Teacher features (N, tokens, D) of latents[:, row] at its sigma, batched."""
    out = []
    for i in range(0, len(latents), batch):
        x = latents[i : i + batch, k_rows]
        c = {n: v[i : i + batch] for n, v in cond.items()}
        out.append(adapter.features(x, torch.full((len(x),), float(sigmas[k_rows])), c, block))
    return torch.cat(out)


def train_head(v: Variant, real, fake, grid, n_train, seed) -> float:
    """Head on the first n_train items, balanced accuracy on the rest."""
    kw = dict(steps=v.steps, lr=v.lr, batch=v.batch, channels=v.channels, input_norm=v.input_norm, seed=seed)
    return train_head_alone(real, fake, grid, n_train, **kw)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="builtin")
    p.add_argument("--data", default=None, help="SynVid folder (needed unless --table)")
    p.add_argument("--out", required=True)
    p.add_argument("--items", type=int, default=512, help="trajectories used (the last --probe are held out)")
    p.add_argument("--probe", type=int, default=128)
    p.add_argument("--seeds", type=int, default=3, help="head initialisations per variant")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--only", default="", help="comma-separated variant indices (default: all)")
    p.add_argument("--student", default=None, help="a distill run: its student's generations as fakes")
    p.add_argument("--table", action="store_true", help="only print the table of an existing --out JSON")
    a = p.parse_args()
    if a.table:
        print(table(json.loads(Path(a.out).read_text())))
        return
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    model = resolve_model(a.teacher)
    ds = SynVidDataset(a.data, teacher=teacher_identity(model))
    adapter = load_adapter(model, device=torch.device("cpu"), dtype=torch.float32)
    n = min(a.items, len(ds))
    n_train = n - a.probe
    real, cond = load_all(ds, n)
    sig = [float(s) for s in ds.key_sigmas]  # noisiest first
    m = len(sig) - 1
    shape = ds.settings.latent_shape
    naive = naive_teacher_latents(adapter, cond, [probe_seed(0, i) for i in range(n)], shape, sig, 5.0)
    # control (fakes=teacher): both kinds are 50-step trajectories, of disjoint items: the even items are "real",
    # the odd ones "fake" (train among train, probe among probe). Nothing to learn: about 0.5 if nothing leaks.
    student_fake = None
    if a.student:
        from accvideo.distill.probe import key_latents
        from accvideo.models.open import open_model

        student = open_model(a.student, device=torch.device("cpu"), dtype=torch.float32)
        noise = batch_noise([probe_seed(0, i) for i in range(n)], shape, torch.device("cpu"))
        parts = []
        for i in range(0, n, 32):
            c = {k: v[i : i + 32] for k, v in cond.items()}
            parts.append(key_latents(lambda x, s, c=c: student.adapter.velocity(x, s, c), noise[i : i + 32], sig))
        student_fake = torch.cat(parts)
    grid = adapter.token_grid(shape)
    from accvideo.distill.heads import default_feature_blocks

    default_blocks = default_feature_blocks(adapter.num_blocks, m)
    variants = [VARIANTS[int(i)] for i in a.only.split(",")] if a.only else VARIANTS
    variants = [v for v in variants if v.fakes != "student" or student_fake is not None]
    cache: dict = {}

    def feats(which, k, block):
        key = (which, k, block)
        if key not in cache:
            src = {"real": real, "naive": naive, "student": student_fake}[which]
            cache[key] = features(adapter, src, cond, sig, m - k, block)
        return cache[key]

    out = Path(a.out)
    kept = json.loads(out.read_text())["rows"] if out.is_file() else []  # rows of other variants stay
    rows = [r for r in kept if r["variant"]["name"] not in {v.name for v in variants}]
    for v in variants:
        accs = []
        for k in range(m):
            block = default_blocks[k] if v.block is None else v.block
            fr = feats("real", k, block)
            if v.fakes == "teacher":  # even items real, odd items fake, in each part (n_train and probe even)
                fr, ff, nt = fr[0::2], fr[1::2], n_train // 2
            else:
                ff, nt = feats(v.fakes, k, block), n_train
            per_seed = [train_head(v, fr, ff, grid, nt, s) for s in range(a.seeds)]
            accs.append({"mean": sum(per_seed) / len(per_seed), "seeds": per_seed})
        rows.append({"variant": asdict(v), "accuracy_k": accs})
        print(v.name, " ".join(f"{x['mean']:.3f}" for x in accs), flush=True)
    order = [v.name for v in VARIANTS]
    rows.sort(key=lambda r: order.index(r["variant"]["name"]) if r["variant"]["name"] in order else len(order))
    data = {
        "command": "python benchmarks/discriminator.py " + " ".join(f"--{k} {val}" for k, val in vars(a).items()),
        "items": n,
        "probe": a.probe,
        "key_sigmas": sig,
        "default_blocks": default_blocks,
        "seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(table(data))


def table(data: dict) -> str:
    sig = data["key_sigmas"][::-1]  # t'_0 .. t'_m
    head = "| head | " + " | ".join(f"k={k} (t'={sig[k]:.2f})" for k in range(len(sig) - 1)) + " |"
    lines = [head, "|---" * (len(sig)) + "|"]
    for r in data["rows"]:
        lines.append(f"| {r['variant']['name']} | " + " | ".join(f"{a['mean']:.2f}" for a in r["accuracy_k"]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
