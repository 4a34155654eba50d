"""Forward layouts of Wan variants for timing only (`bench --random-weights`), with no checkpoint or image at hand.

Each adapter feeds its transformer the inputs the stock pipeline feeds it, so a timed step does the real work; the
conditioning values are placeholders (zeros), which do not change the cost. Wan 2.1 I2V is sampled and distilled
for real by models/wan_i2v.py, Wan 2.2 TI2V's text-to-video mode by models/wan_ti2v.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from accvideo.core.adapter import Conditioning
from accvideo.models.wan import WanAdapter


class WanI2VLayout(WanAdapter):
    """Wan 2.1 I2V as WanImageToVideoPipeline runs it: the transformer takes 16 noise channels plus 20 condition
    channels (4 of first-frame mask, 16 of the VAE-encoded first frame) and a CLIP image embedding (B, 257, 1280)
    that its cross-attention reads through the added K/V projections."""

    def __init__(self, pipe, *, image_encoder: torch.nn.Module, **kw):
        super().__init__(pipe, **kw)
        self.image_encoder = image_encoder
        cfg = self.transformer.config
        self.latent_channels = cfg.out_channels  # the sampler integrates the 16 noise channels only
        self.condition_channels = cfg.in_channels - cfg.out_channels

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        """The text embedding plus the image embedding: CLIP's penultimate hidden states, as the pipeline takes."""
        cond = super().encode_prompts(prompts)
        encoder = self.image_encoder
        size = encoder.config.image_size
        pixels = torch.zeros(len(prompts), 3, size, size, device=self.device, dtype=encoder.dtype)
        hidden = encoder(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        return {**cond, "image_embeds": hidden.to(self.dtype)}

    def _forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        b, _, f, h, w = x.shape
        condition = x.new_zeros(b, self.condition_channels, f, h, w)  # mask + first-frame latent: values cost nothing
        timestep = (1000.0 * sigma).to(x.device).expand(b)
        return self.transformer(
            hidden_states=torch.cat([x, condition], dim=1).to(self.dtype),
            timestep=timestep,
            encoder_hidden_states=cond["prompt_embeds"].to(self.device, self.dtype),
            encoder_hidden_states_image=cond["image_embeds"].to(self.device, self.dtype),
            return_dict=False,
        )[0]
