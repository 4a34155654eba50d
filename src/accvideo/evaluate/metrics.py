"""ToyBench metrics: prompt-alignment accuracy, Frechet distance of classifier features, temporal consistency."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from accvideo.errors import AccVideoError


def alignment_accuracy(preds: Mapping[str, np.ndarray], truth: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Per-attribute accuracy of predicted class indices against truth (N, len(names)), plus mean and joint.

    'mean' averages the attributes; 'joint' is the share of clips with every attribute right.
    """
    if len(truth) == 0:
        return {}
    hits = np.stack([np.asarray(preds[n]) == truth[:, k] for k, n in enumerate(names)], axis=1)
    out = {n: float(hits[:, k].mean()) for k, n in enumerate(names)}
    out["mean"] = float(np.mean([out[n] for n in names]))
    out["joint"] = float(hits.all(axis=1).mean())
    return out


def psd_sqrt(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix by eigendecomposition (negative round-off eigenvalues -> 0)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets a (N, D) and b (M, D); N, M >= 2.

    d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2); the symmetric form keeps every
    square root that of a PSD matrix, so no general (scipy) sqrtm is needed.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise AccVideoError(f"Frechet distance needs two (N >= 2, D) feature sets; got {a.shape} and {b.shape}")
    return frechet_to(gaussian(a), b)


def gaussian(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, covariance, covariance^1/2) of a feature set (N, D): one side of a Frechet distance, computed once
    when many sets are measured against the same reference (the bootstrap of evaluate/intervals.py)."""
    a = np.asarray(a, np.float64)
    s_a = np.cov(a, rowvar=False)
    return a.mean(0), s_a, psd_sqrt(s_a)


def frechet_to(ref: tuple[np.ndarray, np.ndarray, np.ndarray], b: np.ndarray) -> float:
    """The Frechet distance between the Gaussian `ref` (from `gaussian`) and one fitted to b (M, D)."""
    b = np.asarray(b, np.float64)
    return _frechet(*ref, b.mean(0), np.cov(b, rowvar=False))


def _frechet(mu_a: np.ndarray, s_a: np.ndarray, root_a: np.ndarray, mu_b: np.ndarray, s_b: np.ndarray) -> float:
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0.0, None)).sum()
    d2 = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2.0 * cross)
    return max(d2, 0.0)


class RunningGaussian:
    """Mean and covariance of feature rows (N, D) given a chunk at a time, in float64, so a Frechet distance over N
    clips holds (D, D) instead of (N, D). Rows are merged BLOCK at a time whatever the chunks (so the numbers do not
    depend on them), by Chan, Golub and LeVeque's pairwise update of centred sums (no cancellation, unlike sums of
    squares): equal to `np.cov` of the rows stacked to about 1e-14 relative."""

    BLOCK = 64

    def __init__(self, dim: int):
        self.n, self.mean, self.scatter = 0, np.zeros(dim), np.zeros((dim, dim))
        self._rows: list[np.ndarray] = []  # fewer than BLOCK rows not merged yet

    def add(self, rows: np.ndarray) -> None:
        self._rows.append(np.asarray(rows, np.float64).reshape(-1, len(self.mean)))
        pending = np.concatenate(self._rows)
        full = len(pending) - len(pending) % self.BLOCK
        for i in range(0, full, self.BLOCK):
            self._merge(pending[i : i + self.BLOCK])
        self._rows = [pending[full:]]

    def _merge(self, rows: np.ndarray) -> None:
        mean = rows.mean(0)
        centred = rows - mean
        n = self.n + len(rows)
        delta = mean - self.mean
        self.scatter = self.scatter + centred.T @ centred + np.outer(delta, delta) * (self.n * len(rows) / n)
        self.mean, self.n = self.mean + delta * (len(rows) / n), n

    def __len__(self) -> int:
        return self.n + sum(len(r) for r in self._rows)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean (D,), covariance (D, D)) of every row given (N >= 2)."""
        whole = RunningGaussian(len(self.mean))
        whole.n, whole.mean, whole.scatter = self.n, self.mean, self.scatter
        rest = np.concatenate(self._rows)
        if len(rest):
            whole._merge(rest)
        return whole.mean, whole.scatter / (whole.n - 1)


def running_frechet(a: RunningGaussian, b: RunningGaussian) -> float:
    """`frechet_distance` of the feature sets `a` and `b` were given (N, M >= 2), from their running moments."""
    if min(len(a), len(b)) < 2:
        raise AccVideoError(f"Frechet distance needs two feature sets of N >= 2; got {len(a)} and {len(b)}")
    (mu_a, s_a), (mu_b, s_b) = a.moments(), b.moments()
    return _frechet(mu_a, s_a, psd_sqrt(s_a), mu_b, s_b)


def motion_radius(frames: int, height: int, width: int, travel: float) -> int:
    """Largest per-frame displacement (pixels, rounded up) of a world clip whose path spans `travel` of an axis."""
    return max(1, math.ceil(travel * max(height, width) / max(frames - 1, 1)))


@torch.no_grad()
def warp_error(videos: torch.Tensor, radius: int = 2, block: int = 4, batch: int = 256) -> np.ndarray:
    """Per-clip mean residual of predicting each frame from the previous one by block matching.

    Each `block`x`block` block of frame t+1 is compared with the same block of frame t displaced by up to
    `radius` pixels each way; the residual is the mean absolute RGB difference of the best match. Rigid
    motion, uncovered background and a static scene leave almost nothing; flicker, noise and objects that
    change shape, colour or size leave a lot. videos: (N, F, H, W, 3) in [0, 1]; returns (N,).
    """
    n, f, h, w, _ = videos.shape
    if f < 2:
        return np.zeros(n)
    pairs_prev = videos[:, :-1].reshape(n * (f - 1), h, w, 3).permute(0, 3, 1, 2)
    pairs_next = videos[:, 1:].reshape(n * (f - 1), h, w, 3).permute(0, 3, 1, 2)
    errors = []
    for i in range(0, len(pairs_prev), batch):
        prev = F.pad(pairs_prev[i : i + batch].float(), (radius,) * 4, mode="replicate")
        nxt = pairs_next[i : i + batch].float()
        best = None
        for dy in range(2 * radius + 1):
            for dx in range(2 * radius + 1):
                diff = (nxt - prev[..., dy : dy + h, dx : dx + w]).abs().mean(1, keepdim=True)
                cost = F.avg_pool2d(diff, block)  # (B, 1, H/block, W/block): one cost per block
                best = cost if best is None else torch.minimum(best, cost)
        errors.append(best.mean(dim=(1, 2, 3)))
    return torch.cat(errors).view(n, f - 1).mean(1).double().numpy()


def temporal_consistency(videos: torch.Tensor, **kw) -> float:
    """Mean over clips of 1 - warp_error: 1 for perfectly consistent clips, about 0.7 for pure noise."""
    if len(videos) == 0:
        raise AccVideoError("temporal consistency needs at least one clip")
    return float(1.0 - warp_error(videos, **kw).mean())
