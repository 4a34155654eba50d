"""The tables of saved `accvideo bench` results (each run's `bench.json`, copied to benchmarks/results/), as the
command wrote them in its `bench.md`: docs/bench.md's tables.

    accvideo bench --out runs/bench --repeats 3 && cp runs/bench/bench.json benchmarks/results/bench_builtin_cpu.json
    python benchmarks/bench_table.py benchmarks/results/bench_builtin_cpu.json \
        benchmarks/results/bench_wan2.1-1.3b_h200.json
"""

from __future__ import annotations

import argparse
import json

from accvideo.bench.run import bench_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="bench.json files")
    args = parser.parse_args()
    for i, path in enumerate(args.results):
        with open(path) as f:
            print(("\n" if i else "") + bench_markdown(json.load(f)).rstrip())


if __name__ == "__main__":
    main()
