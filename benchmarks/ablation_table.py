"""The ablation table of docs/demo.md from one or more `accvideo ablate` JSON files (cells merged, sorted by m).

    python benchmarks/ablation_table.py [--plot docs/img/ablation.png] A.json [B.json ...]

Each value: mean over training seeds [95% bootstrap interval over clips] ±standard deviation over seeds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from accvideo.demo.ablate import ablation_plot, ablation_tables, comparison_rows

ORDER = "abcde"


def merged(paths: list[str]) -> dict:
    cells, teacher, comparisons = {}, None, []
    for path in paths:
        data = json.loads(Path(path).read_text())
        teacher = teacher or data["cells"]["teacher-n"]
        cells.update({k: v for k, v in data["cells"].items() if k != "teacher-n"})
        comparisons += data.get("comparisons", [])
    ordered = sorted(cells.items(), key=lambda kv: (kv[1]["m"], ORDER.index(kv[1]["row"])))
    comparisons.sort(key=lambda c: c["m"])
    return {"cells": {"teacher-n": teacher, **dict(ordered)}, "comparisons": comparisons}


if __name__ == "__main__":
    args = sys.argv[1:]
    plot = args.pop(args.index("--plot") + 1) if "--plot" in args else None
    args = [a for a in args if a != "--plot"]
    if not args:
        raise SystemExit(__doc__)
    data = merged(args)
    if plot:
        ablation_plot(data, Path(plot))
    print(ablation_tables(data))
    print("\nPaired differences (95% bootstrap intervals over clips):\n")
    print(comparison_rows(data))
