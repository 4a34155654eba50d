"""The 1D experiment's figures over training seeds: each seed's value, their mean and a 95% interval for it.

    for s in 0 1 2; do accvideo toy1d --out runs/toy1d_s$s --seed $s --threads 1; done
    python benchmarks/toy1d_seeds.py runs/toy1d_s{0,1,2}/toy1d.json --json benchmarks/results/toy1d_full_seeds.json
    python benchmarks/toy1d_seeds.py --table benchmarks/results/toy1d_full_seeds.json     # docs/toy1d.md's table

Every seed trains its own teacher and students and draws its own evaluation samples (docs/toy1d.md), so the
interval (Student's t over the seeds, n - 1 degrees of freedom) covers both sources of noise; a fraction's is
clipped to [0%, 100%]. "AccVideo minus X" rows are paired within each seed (same teacher, same evaluation samples).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

# Student's t, two-sided 95%, by degrees of freedom (scipy is not a dependency)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def figures(result: dict) -> dict[str, tuple[float, str]]:
    """The figures of one toy1d.json, by row name: (value, unit) with unit '%' (a fraction), 'pt' (a
    difference of two) or '' (a gap)."""
    rows = {
        "teacher, 50 Euler steps: within 0.2": (result["teacher"]["fraction_near"], "%"),
        "teacher, only its key steps: within 0.2": (result["teacher"]["fraction_near_key_steps"], "%"),
    }
    for s in result["students"]:
        rows[f"{s['name']}: within 0.2"] = (s["fraction_near"], "%")
        rows[f"{s['name']}: mean gap"] = (s["mean_gap"], "")
    accvideo = next(s for s in result["students"] if s["method"] == "accvideo")
    for s in result["students"]:  # paired within each seed: the same teacher and evaluation samples
        if s is not accvideo:
            rows[f"AccVideo minus {s['name']}: within 0.2"] = (accvideo["fraction_near"] - s["fraction_near"], "pt")
    for u in result["useless_frequency"]:
        rows[f"useless points, M = {u['mismatch']:g}"] = (u["frequency"], "%")
    rows["DMD guidance: useless draws"] = (result["dmd"]["guidance_useless_fraction"], "%")
    rows["DMD guidance: teacher on the other side"] = (result["dmd"]["guidance_wrong_side_fraction"], "%")
    return rows


def summarise(results: list[dict]) -> dict:
    per_seed = [figures(r) for r in results]
    names = [n for n in per_seed[0] if all(n in f for f in per_seed)]
    rows = []
    for name in names:
        values = [f[name][0] for f in per_seed]
        mean = statistics.fmean(values)
        half = T95[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
        rows.append({"figure": name, "unit": per_seed[0][name][1], "values": values, "mean": mean, "half": half})
    return {
        "seeds": [r["seed"] for r in results],
        "preset": results[0]["config"],
        "seconds": [r["seconds"]["total"] for r in results],
        "rows": rows,
    }


def table(summary: dict) -> str:
    def fmt(x: float, unit: str) -> str:  # a fraction, a difference of two (percentage points), or a gap
        return {"%": f"{100 * x:.1f}%", "pt": f"{100 * x:+.1f} pt"}.get(unit, f"{x:.3f}")

    seeds = summary["seeds"]
    head = ["figure", *[f"seed {s}" for s in seeds], "mean [95%]"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in summary["rows"]:
        unit, mean, half = r["unit"], r["mean"], r["half"]
        lo, hi = (None, None) if half is None else (mean - half, mean + half)
        if unit == "%" and half is not None:  # a fraction: clipped to [0, 1]
            lo, hi = max(lo, 0.0), min(hi, 1.0)
        interval = "" if half is None else f" [{fmt(lo, unit)}, {fmt(hi, unit)}]"
        cells = [r["figure"], *[fmt(v, unit) for v in r["values"]], fmt(mean, unit) + interval]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="*", type=Path, help="toy1d.json of each seed (same preset)")
    ap.add_argument("--json", type=Path, default=None, help="write the summary here")
    ap.add_argument("--table", type=Path, default=None, help="print the table of a summary JSON written before")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return
    if not args.results:
        raise SystemExit("pass the toy1d.json of each seed, or --table SUMMARY.json")
    results = [json.loads(p.read_text()) for p in args.results]
    configs = {json.dumps(r["config"], sort_keys=True) for r in results}
    if len(configs) > 1:
        raise SystemExit("the results come from different settings; pass runs of one preset")
    if len({r["seed"] for r in results}) < len(results):
        raise SystemExit("two results share a seed; pass one run per seed")
    summary = summarise(results)
    print(table(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
