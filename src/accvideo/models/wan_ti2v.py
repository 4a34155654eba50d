"""Wan 2.2 TI2V-5B behind the model seam: text-to-video (WanPipeline) and image-to-video (WanImageToVideoPipeline),
both with `expand_timesteps=True`.

What differs from Wan 2.1 T2V is one input and the VAE: the stock pipeline gives the transformer a timestep per token
(B, tokens), so its time embedding and modulation run per token; and the 48-channel Wan 2.2 VAE (16x spatial,
4x temporal; its latents_mean/std) sets the geometry, which `WanAdapter` already reads from `vae/config.json`.
Text encoding, the Euler solve, decode and encode are Wan 2.1's.

The image mode (diffusers' WanImageToVideoPipeline with `expand_timesteps`) needs no CLIP embedding: the first frame
alone goes through the VAE (`condition`, one latent frame), every transformer call sees it as latent frame 0 with
timestep 0 on that frame's tokens, and the result's frame 0 is the condition. Within our Euler sampler that is a
velocity of zero on frame 0 and a start whose frame 0 is the condition (`keep_given`): frame 0 then never moves.
"""

from __future__ import annotations

from math import prod

import torch

from accvideo.core.adapter import Conditioning
from accvideo.models.wan import WanAdapter
from accvideo.models.wan_i2v import FirstFrameImage


class WanTI2VAdapter(WanAdapter):
    """Wan 2.2 TI2V text-to-video: UMT5, WanTransformer3DModel with per-token timesteps, the Wan 2.2 VAE."""

    family = "wan2.2-ti2v"

    def _timestep(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """1000 sigma for every token of every item (B, tokens), as WanPipeline's `expand_timesteps` branch."""
        per_item = super()._timestep(x, sigma)
        return per_item[:, None].expand(x.shape[0], prod(self.token_grid(x.shape)))


class WanTI2VImageAdapter(FirstFrameImage, WanTI2VAdapter):
    """Wan 2.2 TI2V image-to-video: the text-to-video adapter with the first latent frame given (clean, t = 0)."""

    components = WanTI2VAdapter.components  # no image encoder: the image enters through the VAE only

    def _encode_image(self, image, frames: int, height: int, width: int) -> Conditioning:
        """{"condition": (1, C, 1, H', W')}: the first frame's normalised VAE latent (argmax), by the pipeline's own
        `prepare_latents`."""
        condition, _mask = self._first_frame(image, frames, height, width)
        return {"condition": condition}

    def keep_given(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """x (B, C, F', H', W') with latent frame 0 replaced by the image's latent: the pipeline's
        `(1 - mask) * condition + mask * latents`."""
        self._image_conditioning(cond)
        return torch.cat([cond["condition"].to(x), x[:, :, 1:]], dim=2)

    def _timestep(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """1000 sigma per token (B, tokens), 0 on latent frame 0's tokens (the pipeline's `mask * t`)."""
        per_token = super()._timestep(x, sigma)
        f, h, w = self.token_grid(x.shape)
        moving = torch.ones(f, h * w, device=per_token.device, dtype=per_token.dtype)
        moving[0] = 0
        return per_token * moving.flatten()

    def _forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The transformer's velocity with frame 0 the condition on input and 0 on output (frame 0 never moves)."""
        v = super()._forward(self.keep_given(x, cond), sigma, cond)
        return torch.cat([torch.zeros_like(v[:, :, :1]), v[:, :, 1:]], dim=2)
