"""Discriminator heads H_k (docs/method.md 3): small 2D conv nets over each frame's token grid, one per key step."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def frames_of_tokens(tokens: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Video tokens (B, F'*H'*W', D), frame-major as the transformer flattens them -> (B*F', D, H', W')."""
    b, n, d = tokens.shape
    f, h, w = grid
    if n != f * h * w:
        raise ValueError(f"{n} tokens do not fill a {f}x{h}x{w} token grid")
    frames = tokens.reshape(b, f, h, w, d).permute(0, 1, 4, 2, 3).reshape(b * f, d, h, w)
    # Row-major strides, always: torch 2.13's CPU GroupNorm backward crashes (SIGSEGV) on channels-last strides when
    # its input needs no gradient (the heads' L_D step). `.contiguous()` is not enough: at a 1x1 token grid (Wan 2.2
    # TI2V at 32x32) a (N, D, 1, 1) tensor with channels-last strides already counts as contiguous and is kept.
    return frames.clone(memory_format=torch.contiguous_format)


class FeatureHead(nn.Module):
    """Logit per video (B,) from teacher features (B, tokens, D): conv over each frame, pooled, averaged over frames.

    Only the channel count is fixed (the teacher's width); any token grid passes, so the head follows the input.
    """

    def __init__(self, dim: int, channels: int = 64):
        super().__init__()
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        self.net = nn.Sequential(
            nn.GroupNorm(1, dim),  # teacher hidden states can be large; per-sample, so batch-independent
            nn.Conv2d(dim, channels, 3, padding=1),
            nn.GroupNorm(groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, 1),
        )

    def forward(self, tokens: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        frames = frames_of_tokens(tokens.float(), grid)
        return self.net(frames).view(tokens.shape[0], grid[0]).mean(1)


class Heads(nn.Module):
    """H_0 .. H_{m-1} (per-step), or one head used at every key step (shared, the paper's weaker ablation)."""

    def __init__(self, num_key_steps: int, dim: int, channels: int = 64, shared: bool = False):
        super().__init__()
        self.shared = shared
        self.heads = nn.ModuleList(FeatureHead(dim, channels) for _ in range(1 if shared else num_key_steps))

    def __getitem__(self, k: int) -> FeatureHead:
        return self.heads[0 if self.shared else k]

    def forward(self, k: int, tokens: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """D logits (B,) of key step k."""
        return self[k](tokens, grid)


def default_feature_blocks(num_blocks: int, num_key_steps: int) -> list[int]:
    """The paper's choice: the last block for t'_k > 0, about two thirds of the depth for t'_0 = 0."""
    deep = max(0, round(2 * num_blocks / 3) - 1)  # 60 blocks -> block 39 (the 40th)
    return [deep] + [num_blocks - 1] * (num_key_steps - 1)
