"""Two `accvideo ablate` JSONs of the same grid side by side: does a rerun (other code, other fakes) agree?

    python benchmarks/ablation_rerun.py OLD.json NEW.json [--json OUT.json]

For every cell both hold: each run's mean [95% interval over clips] and whether the new mean lies inside the old
interval. For every paired difference both hold ((d) - (b), (e) - (b), ...): both readings and whether they reach
the same conclusion (both intervals above 0, both below, or both straddling it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation_table import read_ablation  # noqa: E402

METRICS = {"accuracy": "mean acc", "frechet_distance": "Frechet"}


def verdict(lo: float, hi: float) -> str:
    return "above 0" if lo > 0 else "below 0" if hi < 0 else "straddles 0"


def compare(old: dict, new: dict) -> dict:
    """{"cells": [...], "differences": [...]}, one record per cell or difference and metric both runs hold."""
    cells, differences = [], []
    for key, cell in old["cells"].items():
        if key == "teacher-n" or key not in new["cells"]:
            continue
        for metric in METRICS:
            a, b = cell["metrics"][metric], new["cells"][key]["metrics"][metric]
            inside = a["lo"] <= b["mean"] <= a["hi"]
            cells.append({"cell": key, "metric": metric, "old": a, "new": b, "inside_old_interval": inside})
    later = {(c["m"], c["first"], c["second"]): c for c in new.get("comparisons", [])}
    for c in old.get("comparisons", []):
        twin = later.get((c["m"], c["first"], c["second"]))
        if twin is None:
            continue
        for metric in METRICS:
            a, b = c["metrics"][metric], twin["metrics"][metric]
            same = verdict(a["lo"], a["hi"]) == verdict(b["lo"], b["hi"])
            name = f"m{c['m']} ({c['first']}) - ({c['second']})"
            differences.append({"difference": name, "metric": metric, "old": a, "new": b, "same_conclusion": same})
    return {"cells": cells, "differences": differences}


def table(result: dict) -> str:
    def cell(x: dict, metric: str, key: str = "mean") -> str:
        d = 3 if metric == "accuracy" else 1
        return f"{x[key]:.{d}f} [{x['lo']:.{d}f}, {x['hi']:.{d}f}]"

    lines = ["| cell | metric | first run | rerun | rerun's mean inside the first interval |", "|---|---|---|---|---|"]
    for r in result["cells"]:
        inside = "yes" if r["inside_old_interval"] else "**no**"
        old, new = cell(r["old"], r["metric"]), cell(r["new"], r["metric"])
        lines.append(f"| {r['cell']} | {METRICS[r['metric']]} | {old} | {new} | {inside} |")
    lines += ["", "| difference | metric | first run | rerun | same conclusion |", "|---|---|---|---|---|"]
    for r in result["differences"]:
        same = "yes" if r["same_conclusion"] else "**no**"
        old, new = cell(r["old"], r["metric"], "diff"), cell(r["new"], r["metric"], "diff")
        lines.append(f"| {r['difference']} | {METRICS[r['metric']]} | {old} | {new} | {same} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", help="the first run's ablation JSON")
    parser.add_argument("new", help="the rerun's ablation JSON")
    parser.add_argument("--json", help="also write the comparison here")
    args = parser.parse_args()
    try:
        result = compare(read_ablation(args.old), read_ablation(args.new))
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps({"old": args.old, "new": args.new, **result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
