"""Batches for distillation: random SynVid trajectories and fresh noise for Q_m, each item from its own seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from accvideo.core.adapter import Conditioning
from accvideo.core.runtime import batch_noise


def fake_seed(seed: int, counter: int) -> int:
    """The starting-noise seed of the `counter`-th fake of a run (independent of batch size and resumes).

    The stream's tag is the last word: SeedSequence ignores trailing zero words, so `[seed, 1, 0]` was the world's
    `item_seed(seed, 1)` (`[seed, 1]`), and the first fake started from a SynVid item's noise."""
    return int(np.random.SeedSequence([int(seed), int(counter), 1]).generate_state(1)[0] & 0x7FFFFFFF)


class Trajectories:
    """Random access to a SynVidDataset as batches on `device`: latents (B, m+1, C, F', H', W') noisiest first."""

    def __init__(self, dataset, device: torch.device):
        self.dataset = dataset
        self.device = device

    def draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """n item indices (with replacement) from the run's generator."""
        return torch.randint(len(self.dataset), (n,), generator=gen)

    def load(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, Conditioning]:
        """Stacked key latents (B, m+1, ...) and conditioning {name: (B, ...)} of these items."""
        items = [self.dataset[int(i)] for i in indices]
        latents = torch.stack([it["latents"] for it in items]).to(self.device)
        cond = {k: torch.stack([it["cond"][k] for it in items]).to(self.device) for k in items[0]["cond"]}
        return latents, cond

    def noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """Fresh noise (B, C, F', H', W'), row b from seeds[b] alone."""
        return batch_noise(seeds, self.dataset.settings.latent_shape, self.device)
