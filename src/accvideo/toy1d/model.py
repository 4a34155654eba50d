"""The small 1D ResNet of the paper's toy experiment (Figure 2a): (x, sigma) -> velocity."""

from __future__ import annotations

import math

import torch
from torch import nn

# Below this noise level the velocity (x - x0_hat) / sigma is not evaluated (Euler never does).
SIGMA_MIN = 1e-3


def sinusoidal_encoding(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style positional encoding of 1000*sigma, shape (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = 1000.0 * sigma.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ToyResNet1D(nn.Module):
    """Conv1D + BatchNorm stem, one residual block, average pooling, linear head (Figure 2a).

    The input is a 2-channel sequence of length `pe_dim`: x (scaled) repeated, and the sinusoidal
    encoding of sigma. The head predicts the denoised point x0_hat and forward returns the velocity
    v = (x - x0_hat) / sigma: the exact velocity's slope in x grows like 1/sigma near sigma = 0,
    which a small ReLU net fits badly as a direct output (measured: 95% of its 50-step samples
    within 0.2 of +-3 against 99.9% with this head, same budget).
    """

    def __init__(self, channels: int = 32, pe_dim: int = 8, data_scale: float = 3.0) -> None:
        super().__init__()
        self.pe_dim = pe_dim
        self.data_scale = data_scale
        self.stem = nn.Sequential(nn.Conv1d(2, channels, 3, padding=1), nn.BatchNorm1d(channels), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=1),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1),
            nn.BatchNorm1d(channels),
        )
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(channels, 1)

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0_hat for x (B,) at noise levels sigma (B,), shape (B,)."""
        seq = torch.stack(
            [(x / self.data_scale)[:, None].expand(-1, self.pe_dim), sinusoidal_encoding(sigma, self.pe_dim)],
            dim=1,
        )
        h = self.stem(seq)
        h = torch.relu(h + self.block(h))
        return self.data_scale * self.head(self.pool(h).squeeze(-1)).squeeze(-1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Velocity v = eps - x0 (docs/method.md 0) for x (B,) at sigma (B,), shape (B,)."""
        return (x - self.denoised(x, sigma)) / sigma.to(x.dtype).clamp(min=SIGMA_MIN)


def init_weights(net: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every conv/linear layer as PyTorch's default init does, but from `generator`."""
    for module in net.modules():
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            fan_in = module.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return net


def build_net(channels: int, pe_dim: int, data_scale: float, generator: torch.Generator) -> ToyResNet1D:
    """A freshly initialised ToyResNet1D whose weights depend only on `generator`."""
    with torch.random.fork_rng(devices=[]):  # the default init draws from, and would advance, global RNG
        net = ToyResNet1D(channels, pe_dim, data_scale)
    return init_weights(net, generator)
