"""Wan 2.2 TI2V-5B in its text-to-video mode behind the model seam: WanPipeline with `expand_timesteps=True`.

What differs from Wan 2.1 T2V is one input and the VAE: the stock pipeline gives the transformer a timestep per token
(B, tokens), so its time embedding and modulation run per token (the image mode keeps the first latent frame's
tokens at t = 0; without an image every token carries the item's t); and the 48-channel Wan 2.2 VAE (16x spatial,
4x temporal; its latents_mean/std) sets the geometry, which `WanAdapter` already reads from `vae/config.json`.
Text encoding, the Euler solve, decode and encode are Wan 2.1's.
"""

from __future__ import annotations

from math import prod

import torch

from accvideo.models.wan import WanAdapter


class WanTI2VAdapter(WanAdapter):
    """Wan 2.2 TI2V text-to-video: UMT5, WanTransformer3DModel with per-token timesteps, the Wan 2.2 VAE."""

    family = "wan2.2-ti2v"

    def _timestep(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """1000 sigma for every token of every item (B, tokens), as WanPipeline's `expand_timesteps` branch."""
        per_item = super()._timestep(x, sigma)
        return per_item[:, None].expand(x.shape[0], prod(self.token_grid(x.shape)))
