"""Students of several training seeds on ToyBench, from `benchmarks/toybench.py` JSONs: each seed's row, and over
the seeds the mean with a 95% interval (Student's t, n - 1 degrees of freedom) of the student and of a baseline
minus the student (docs/builtin.md's image-to-video seeds table).

    python benchmarks/toybench_seeds.py --baseline teacher-5 \
        --student benchmarks/results/toybench_i2v_student.json:student-5 \
        --student benchmarks/results/toybench_i2v_student_seeds12.json:student-5-s1 \
        --student benchmarks/results/toybench_i2v_student_seeds12.json:student-5-s2

Every JSON must score the same prompts and seeds (n, split, seed), and the baseline row must read the same in each
(the same sampler on the same pairs), so that "baseline minus student" is a difference on the same clips. A seed's
interval over clips (the JSON's bootstrap) is printed beside its row when the JSON holds one.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

from toy1d_seeds import T95

METRICS = (("mean acc", lambda r: r["accuracy"]["mean"], ".3f"), ("Frechet", lambda r: r["frechet_distance"], ".2f"))


def t_interval(values: list[float]) -> tuple[float, float, float]:
    m = statistics.mean(values)
    half = T95[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def load(spec: str, baseline: str) -> tuple[dict, dict, tuple]:
    path, _, name = spec.rpartition(":")
    with open(path) as f:
        result = json.load(f)
    rows = {r["name"]: r for r in result["runs"]}
    if name not in rows or baseline not in rows:
        raise SystemExit(f"{path} has no row {name!r} or {baseline!r}; rows: {', '.join(rows)}")
    return rows[name], rows[baseline], (result["n"], result["split"], result["seed"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", action="append", required=True, help="JSON:ROW, one a training seed")
    ap.add_argument("--baseline", required=True, help="the row every JSON holds (e.g. teacher-5)")
    args = ap.parse_args()
    loaded = [load(s, args.baseline) for s in args.student]
    if len({pairs for *_, pairs in loaded}) > 1 or len({json.dumps(b["accuracy"]) for _, b, _ in loaded}) > 1:
        raise SystemExit("the JSONs score other pairs, or their baseline rows differ")
    base = loaded[0][1]
    head = ["student", *(n for n, _, _ in METRICS), *(f"{args.baseline} minus student, {n}" for n, _, _ in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def ci(row: dict, key: str, fmt: str) -> str:
        b = row.get("intervals", {}).get(key)
        return f" [{b['lo']:{fmt}}, {b['hi']:{fmt}}]" if b else ""

    keys = {"mean acc": "accuracy", "Frechet": "frechet_distance"}
    for row, _, _ in loaded:
        cells = [row["name"]]
        cells += [f"{get(row):{fmt}}" + ci(row, keys[n], fmt) for n, get, fmt in METRICS]
        cells += [f"{get(base) - get(row):+{fmt}}" for _, get, fmt in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    if len(loaded) > 1:
        cells = [f"mean of {len(loaded)} seeds [95% t]"]
        columns = [([get(r) for r, _, _ in loaded], fmt) for _, get, fmt in METRICS]
        columns += [([get(base) - get(r) for r, _, _ in loaded], "+" + fmt) for _, get, fmt in METRICS]
        for values, fmt in columns:
            m, lo, hi = t_interval(values)
            cells.append(f"{m:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]")
        lines.append("| " + " | ".join(cells) + " |")
    print(f"{args.baseline}: " + ", ".join(f"{n} {get(base):{fmt}}" for n, get, fmt in METRICS))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
