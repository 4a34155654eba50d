"""Intervals that survive noise: a percentile bootstrap over clips of ToyBench metrics, pooled over training seeds
(and, for paired differences on request, over the training seeds too: `compare(..., resample_seeds=True)`).

One `ClipScores` per scored set of clips (one trained student, one seed). `summarise` takes the sets of one row
(a method trained with several seeds, all scored on the same evaluation pairs) and reports, per metric: the
mean over seeds, each seed's value, their spread (sample standard deviation), and a 95% interval over clips of
the mean over seeds: every bootstrap draw resamples the same clip indices in every set (the pairs are shared).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from accvideo.evaluate.metrics import frechet_distance, frechet_to, gaussian


@dataclass(frozen=True)
class ClipScores:
    """Per-clip ToyBench scores of N scored clips (rows aligned with their evaluation pairs)."""

    names: Sequence[str]  # attributes, in the classifier's order
    hits: np.ndarray  # (N, A) bool: attribute a of clip i classified as captioned
    features: np.ndarray  # (N, D) classifier features of the clips
    real_features: np.ndarray  # (N, D) classifier features of the real clips of the same pairs
    consistency: np.ndarray  # (N,) 1 - warp error

    def metrics(self, idx: np.ndarray | None = None, real: tuple | None = None) -> dict[str, float]:
        """Mean accuracy, per-attribute accuracy, Frechet distance and temporal consistency over clips `idx`.

        `real`: `gaussian(real_features[idx])` when the caller has it (shared by every set of a bootstrap draw);
        the same distance, from the real side's square root instead of this set's."""
        idx = np.arange(len(self.hits)) if idx is None else idx
        hits = self.hits[idx]
        out = {"accuracy": float(hits.mean()), **{n: float(hits[:, k].mean()) for k, n in enumerate(self.names)}}
        if real is None:
            out["frechet_distance"] = frechet_distance(self.features[idx], self.real_features[idx])
        else:
            out["frechet_distance"] = frechet_to(real, self.features[idx])
        out["temporal_consistency"] = float(self.consistency[idx].mean())
        return out


def _draw_metrics(sets: Sequence[ClipScores], idx: np.ndarray) -> list[dict[str, float]]:
    """Every set's metrics on the clips `idx` of one bootstrap draw; the real clips' Gaussian is fitted once when
    the sets share their real clips (they score the same pairs), not once per set."""
    real = sets[0].real_features
    shared = all(s.real_features is real or np.array_equal(s.real_features, real) for s in sets[1:])
    stats = gaussian(real[idx]) if shared else None
    return [s.metrics(idx, stats) for s in sets]


def summarise(sets: Sequence[ClipScores], draws: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """{metric: {"mean", "seeds", "sd", "lo", "hi"}} over the sets (one per training seed) of one row."""
    n = len(sets[0].hits)
    if any(len(s.hits) != n for s in sets):
        raise ValueError("every set of a row must score the same evaluation pairs")
    per_seed = [s.metrics() for s in sets]
    rng = np.random.default_rng(seed)
    boot = {name: np.empty(draws) for name in per_seed[0]}
    for b in range(draws):
        idx = rng.integers(n, size=n)
        values = _draw_metrics(sets, idx)
        for name in boot:
            boot[name][b] = np.mean([v[name] for v in values])
    tail = 100 * (1 - level) / 2
    out = {}
    for name in per_seed[0]:
        seeds = [v[name] for v in per_seed]
        out[name] = {
            "mean": float(np.mean(seeds)),
            "seeds": seeds,
            "sd": float(np.std(seeds, ddof=1)) if len(seeds) > 1 else 0.0,
            "lo": float(np.percentile(boot[name], tail)),
            "hi": float(np.percentile(boot[name], 100 - tail)),
        }
    return out


def compare(
    first: Sequence[ClipScores],
    second: Sequence[ClipScores],
    draws: int = 1000,
    seed: int = 0,
    resample_seeds: bool = False,
) -> dict:
    """{metric: {"diff", "lo", "hi"}}: mean over `first`'s seeds minus mean over `second`'s, with a paired 95%
    bootstrap interval over clips (both rows scored the same pairs, so each draw resamples the same clips).

    `resample_seeds`: each draw also resamples each row's training seeds (with replacement), so the interval holds
    the training's noise as well as the clips'. With 3 seeds it is coarse, and still narrower than the truth by
    about (n - 1) / n in variance, as any bootstrap over n values; the clips-only interval holds none of it."""
    n = len(first[0].hits)
    if any(len(s.hits) != n for s in (*first, *second)):
        raise ValueError("both rows must score the same evaluation pairs")

    def mean_of(values):
        return {name: float(np.mean([v[name] for v in values])) for name in values[0]}

    a, b = mean_of([s.metrics() for s in first]), mean_of([s.metrics() for s in second])
    rng = np.random.default_rng(seed)
    boot = {name: np.empty(draws) for name in a}
    for i in range(draws):
        idx = rng.integers(n, size=n)
        values = _draw_metrics([*first, *second], idx)
        va, vb = values[: len(first)], values[len(first) :]
        if resample_seeds:
            va = [va[k] for k in rng.integers(len(va), size=len(va))]
            vb = [vb[k] for k in rng.integers(len(vb), size=len(vb))]
        da, db = mean_of(va), mean_of(vb)
        for name in boot:
            boot[name][i] = da[name] - db[name]
    return {
        name: {
            "diff": a[name] - b[name],
            "lo": float(np.percentile(boot[name], 2.5)),
            "hi": float(np.percentile(boot[name], 97.5)),
        }
        for name in a
    }
