"""`accvideo bench`: where the time of one generation goes, teacher against student."""

from accvideo.bench.run import BenchConfig, bench_markdown, run_bench

__all__ = ["BenchConfig", "bench_markdown", "run_bench"]
