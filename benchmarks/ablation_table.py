"""The ablation table of docs/demo.md from one or more `accvideo ablate` JSON files (cells merged, sorted by m).

    python benchmarks/ablation_table.py [--plot docs/img/ablation.png] A.json [B.json ...]

Each value: mean over training seeds [95% bootstrap interval over clips] ±standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from accvideo.demo.ablate import ablation_plot, ablation_tables, comparison_rows

ORDER = "abcde"


def read_ablation(path: str) -> dict:
    """An `accvideo ablate` JSON; ValueError naming the file when it is missing, not JSON or not an ablation's."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path} ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict) or "teacher-n" not in data.get("cells", {}):
        raise ValueError(f"{path} is not an `accvideo ablate` JSON (no cells.teacher-n)")
    return data


def merged(paths: list[str]) -> dict:
    cells, teacher, comparisons = {}, None, []
    for path in paths:
        data = read_ablation(path)
        teacher = teacher or data["cells"]["teacher-n"]
        cells.update({k: v for k, v in data["cells"].items() if k != "teacher-n"})
        comparisons += data.get("comparisons", [])
    ordered = sorted(cells.items(), key=lambda kv: (kv[1]["m"], ORDER.index(kv[1]["row"])))
    comparisons.sort(key=lambda c: c["m"])
    return {"cells": {"teacher-n": teacher, **dict(ordered)}, "comparisons": comparisons}


def main(argv: list[str] | None = None) -> None:
    """argparse, so `--help` is help (it was read as a JSON path: a traceback) and a bad file is one line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="+", help="`accvideo ablate` JSON files (OUT/ablation.json); later cells win")
    p.add_argument("--plot", default=None, help="also draw the ablation plot to this PNG")
    a = p.parse_args(argv)
    try:
        data = merged(a.json)
    except ValueError as exc:
        print(f"error: {exc}; pass the ablation.json of `accvideo ablate --out OUT`", file=sys.stderr)
        raise SystemExit(2) from None
    if a.plot:
        ablation_plot(data, Path(a.plot))
    print(ablation_tables(data))
    print("\nPaired differences (95% bootstrap intervals over clips):\n")
    print(comparison_rows(data))
    if seeded := comparison_rows(data, seeds=True):  # ablate seed_intervals=true
        print("\nThe same differences, 95% bootstrap intervals over training seeds and clips:\n")
        print(seeded)


if __name__ == "__main__":
    main()
