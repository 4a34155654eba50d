"""Wan 2.1 image-to-video behind the model seam, wrapping diffusers' WanImageToVideoPipeline components.

The image is conditioning like the text: `encode_images` runs the pipeline's own `encode_image` (CLIP) and
`prepare_latents` (the first frame through the VAE, plus the first-frame mask), so SynVid items store it and
distillation never runs the image encoder or the VAE encoder. Every forward concatenates the stored condition to the
noisy latents (16 + 20 channels for Wan 2.1) and passes the image embedding to the transformer's image
cross-attention, as the stock pipeline does.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

from accvideo.core.adapter import Conditioning
from accvideo.errors import AccVideoError
from accvideo.models.base import WHOLE, LoadParts
from accvideo.models.wan import WanAdapter

IMAGE_KEYS = ("image_embeds", "condition")  # what encode_images adds to a conditioning


class WanI2VAdapter(WanAdapter):
    """Wan 2.1 I2V: UMT5 text encoder, CLIP vision encoder, WanTransformer3DModel (36 in, 16 out), AutoencoderKLWan."""

    pipeline_class = "WanImageToVideoPipeline"
    components = (*WanAdapter.components, "image_encoder", "image_processor")
    image_conditioned = True

    def __init__(self, pipe, **kw):
        super().__init__(pipe, **kw)
        cfg = self.transformer.config
        self.latent_channels = cfg.out_channels  # the sampler integrates the noise channels only
        self.condition_channels = cfg.in_channels - cfg.out_channels  # first-frame mask + first-frame latent

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        parts: LoadParts = WHOLE,
        **kw,
    ):
        """Load a local diffusers-format Wan 2.1 I2V directory; its prompt cleaning needs ftfy."""
        if parts.text and importlib.util.find_spec("ftfy") is None:
            raise AccVideoError(
                "WanImageToVideoPipeline cleans prompts with ftfy, which is not installed: pip install ftfy"
            )
        adapter = super().load(path, device=device, dtype=dtype, parts=parts, **kw)
        cfg = adapter.transformer.config
        if cfg.image_dim is None:
            raise AccVideoError(f"{path}: its transformer has no image_dim (not a Wan 2.1 I2V transformer); re-save it")
        if cfg.get("pos_embed_seq_len") is not None:  # FLF2V embeds a first and a last frame's CLIP states
            raise AccVideoError(
                f"{path} holds a first-last-frame (FLF2V) transformer; accvideo supports one-image Wan 2.1 I2V only"
            )
        return adapter

    # --- image ----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, images: Sequence, frames: int, height: int, width: int) -> Conditioning:
        """{"image_embeds": (B, T, D) CLIP penultimate states, "condition": (B, 4 + C, F', H', W') first-frame mask and
        VAE latent}, each row by the pipeline's own `encode_image` and `prepare_latents` of one PIL image of
        exactly (height, width) (core/images.py fits it)."""
        pipe, embeds, conditions = self.pipe, [], []
        shape = (1, *self.latent_shape(frames, height, width))
        for image in images:
            if tuple(image.size) != (width, height):
                raise AccVideoError(f"an image of {image.size[0]}x{image.size[1]} for a {width}x{height} video; fit it")
            embeds.append(pipe.encode_image(image, self.device))
            pixels = pipe.video_processor.preprocess(image, height=height, width=width)
            _, condition = pipe.prepare_latents(
                pixels.to(self.device, torch.float32),
                1,
                self.latent_channels,
                height,
                width,
                frames,
                torch.float32,
                self.device,
                latents=torch.zeros(shape),  # the noise is the sampler's; no random draw here
            )
            conditions.append(condition)
        return {"image_embeds": torch.cat(embeds).to(self.dtype), "condition": torch.cat(conditions).to(self.dtype)}

    # --- transformer ----------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        missing = [k for k in IMAGE_KEYS if k not in cond]
        if missing:
            raise AccVideoError(
                f"the image-to-video model got no image conditioning ({', '.join(missing)}); give it an image "
                '(--image FILE, or an "image" in each JSONL prompt row)'
            )
        condition = cond["condition"].to(self.device, self.dtype)
        return self.transformer(
            hidden_states=torch.cat([x.to(self.dtype), condition], dim=1),
            timestep=self._timestep(x, sigma),
            encoder_hidden_states=cond["prompt_embeds"].to(self.device, self.dtype),
            encoder_hidden_states_image=cond["image_embeds"].to(self.device, self.dtype),
            return_dict=False,
        )[0]
