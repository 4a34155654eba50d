"""The decoder's losses and its fidelity metrics; none needs downloaded weights.

Frames are (B, F, 3, H, W) in [-1, 1] (the decoder's layout); metrics take videos (B, F, H, W, 3) in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def l1(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error; with `weights` (broadcast to the error), the weighted mean."""
    err = (pred - target).abs()
    if weights is None:
        return err.mean()
    weights = weights.expand_as(err)
    return (weights * err).sum() / weights.sum()


def edge_weights(target: torch.Tensor, strength: float) -> torch.Tensor:
    """1 + strength * the target's local edge magnitude, (B, F, 1, H, W): the absolute x and y differences,
    averaged over colour, summed, and spread to the 3x3 neighbourhood (an edge's error lies on both its sides)."""
    dx = F.pad(torch.diff(target, dim=-1).abs().mean(2, keepdim=True), (0, 1))
    dy = F.pad(torch.diff(target, dim=-2).abs().mean(2, keepdim=True), (0, 0, 0, 1))
    return 1.0 + strength * dilate(dx + dy)


def dilate(x: torch.Tensor) -> torch.Tensor:
    """The 3x3 maximum over the last two axes of non-negative values, as max_pool2d(x, 3, 1, 1) gives it but in
    less CPU time: a 3-wide maximum along x, then along y, over a border of zeros."""
    p = F.pad(x, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(p[..., :-2], p[..., 1:-1]), p[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 between the image gradients along x, y (and frames, when there are several): the structural term."""
    total = 0.0
    dims = [-1, -2] + ([1] if pred.shape[1] > 1 else [])
    for d in dims:
        total = total + l1(torch.diff(pred, dim=d), torch.diff(target, dim=d))
    return total / len(dims)


def spectral_loss(pred: torch.Tensor, target: torch.Tensor, balance: bool = False) -> torch.Tensor:
    """Mean L1 between the amplitude spectra (orthonormal 2D FFT) of each frame and colour channel.

    It leaves the phase out: it asks for the target's detail energy at every spatial frequency without asking where
    it lies, which the pixel losses already do. Those alone regress towards a blur short of fine detail.
    With `balance`, each frequency's error is divided by the target's mean amplitude there over the batch (plus
    SPECTRAL_FLOOR): a relative error per frequency, so the fine detail, whose amplitudes are a thousandth of the
    coarse ones', counts as much as the coarse.
    """
    a_pred = torch.fft.rfft2(pred.float(), norm="ortho").abs()
    a_target = torch.fft.rfft2(target.float(), norm="ortho").abs()
    if not balance:
        return l1(a_pred, a_target)
    scale = a_target.mean(dim=tuple(range(a_target.dim() - 2)), keepdim=True) + SPECTRAL_FLOOR
    return ((a_pred - a_target).abs() / scale).mean()


SPECTRAL_FLOOR = 1e-3  # the balanced spectral loss's floor on the mean amplitude (frames in [-1, 1]; ortho FFT)


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - the mean SSIM (the metric's window and constants) of frames (B, F, 3, H, W) in [-1, 1]. Its contrast
    factor charges a blurred patch for its lost local variance, which the pixel losses accept as the safe guess."""
    return 1 - ssim_map(pred.float().flatten(0, 1) / 2 + 0.5, target.float().flatten(0, 1) / 2 + 0.5).mean()


def feature_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between projected student features and the VAE decoder's (B, F, C, h, w), over the teacher's variance."""
    return F.mse_loss(student, teacher) / teacher.var().clamp_min(1e-6)


class PatchDiscriminator(nn.Module):
    """A small per-frame patch discriminator (logits per 8x8-stride patch), for the optional adversarial term."""

    def __init__(self, channels: int = 3, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 2 * width, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 3, 1, 1),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (B, F, c, H, W) -> patch logits (B*F, 1, H/8, W/8)."""
        return self.net(frames.flatten(0, 1))


def hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


# --- metrics ----------------------------------------------------------------------------------------------------


def psnr(video: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-clip PSNR in dB (B,) of videos (B, F, H, W, 3) in [0, 1]."""
    mse = (video.float() - reference.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def ssim(video: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-clip SSIM (B,) of videos (B, F, H, W, 3) in [0, 1]: Wang et al. 2004, an 11-tap Gaussian window
    (sigma 1.5), per channel and frame, valid region, averaged."""
    b = video.shape[0]
    x = video.float().permute(0, 1, 4, 2, 3).flatten(0, 1)  # (B*F, 3, H, W)
    y = reference.float().permute(0, 1, 4, 2, 3).flatten(0, 1)
    return ssim_map(x, y).reshape(b, -1).mean(1)


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The SSIM map (N, C, h, w) of images (N, C, H, W) in [0, 1] over the valid region: the five local moments
    blurred at once, as one depthwise separable convolution (far less CPU time than a convolution per moment)."""
    g = _gaussian().to(x)
    size = min(11, x.shape[-1], x.shape[-2])
    g = g[(11 - size) // 2 : (11 - size) // 2 + size]
    g = g / g.sum()
    moments = torch.cat([x, y, x * x, y * y, x * y], 1)
    k = moments.shape[1]
    blurred = F.conv2d(moments, g.view(1, 1, 1, -1).expand(k, 1, 1, size), groups=k)
    blurred = F.conv2d(blurred, g.view(1, 1, -1, 1).expand(k, 1, size, 1), groups=k)
    mx, my, xx, yy, xy = blurred.chunk(5, 1)
    c1, c2 = 0.01**2, 0.03**2
    vx, vy, cxy = xx - mx**2, yy - my**2, xy - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
