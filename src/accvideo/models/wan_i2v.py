"""Wan image-to-video behind the model seam, wrapping diffusers' WanImageToVideoPipeline components.

The image is conditioning like the text: `encode_images` runs the pipeline's own encoders on one image a row, so
SynVid items store it and distillation never runs the image encoder or the VAE encoder. `FirstFrameImage` is what
both layouts of that pipeline share (loading, the pipeline's own `prepare_latents`, the refusal of a conditioning
without the image); Wan 2.1 I2V (here) concatenates the first-frame condition to the noisy latents (16 + 20 channels)
and passes CLIP's image embedding to the transformer's image cross-attention, as the stock pipeline does; Wan 2.2
TI2V's image mode keeps the first latent frame clean instead (models/wan_ti2v.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

from accvideo.core.adapter import Conditioning, concat
from accvideo.errors import AccVideoError
from accvideo.models.base import WHOLE, LoadParts
from accvideo.models.wan import WanAdapter


class FirstFrameImage:
    """Mixin for a Wan adapter over WanImageToVideoPipeline components; the family gives `_encode_image` (one PIL
    image -> its conditioning row) and `image_keys` (the names that row holds)."""

    pipeline_class = "WanImageToVideoPipeline"
    image_conditioned = True
    image_keys: tuple[str, ...] = ("condition",)

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
        """Load a local WanImageToVideoPipeline directory; its prompt cleaning needs ftfy."""
        if parts.text and importlib.util.find_spec("ftfy") is None:
            raise AccVideoError(
                "WanImageToVideoPipeline cleans prompts with ftfy, which is not installed: pip install ftfy"
            )
        return super().load(path, device=device, dtype=dtype, parts=parts, **kw)

    @torch.no_grad()
    def encode_images(self, images: Sequence, frames: int, height: int, width: int) -> Conditioning:
        """One conditioning row per PIL image of exactly (height, width) (core/images.py fits it)."""
        rows = []
        for image in images:
            if tuple(image.size) != (width, height):
                raise AccVideoError(f"an image of {image.size[0]}x{image.size[1]} for a {width}x{height} video; fit it")
            rows.append(self._encode_image(image, frames, height, width))
        return {k: v.to(self.dtype) for k, v in concat(rows).items()}

    def _encode_image(self, image, frames: int, height: int, width: int) -> Conditioning:
        raise NotImplementedError

    def _first_frame(self, image, frames: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
        """The pipeline's own `prepare_latents` of one image less its noise: (condition (1, 4 + C, F', H', W'),)
        for Wan 2.1 I2V; (first-frame latent (1, C, 1, H', W'), first-frame mask) with `expand_timesteps`."""
        pixels = self.pipe.video_processor.preprocess(image, height=height, width=width)
        return self.pipe.prepare_latents(
            pixels.to(self.device, torch.float32),
            1,
            self.latent_channels,
            height,
            width,
            frames,
            torch.float32,
            self.device,
            latents=torch.zeros((1, *self.latent_shape(frames, height, width))),  # the noise is the sampler's
        )[1:]

    def _image_conditioning(self, cond: Conditioning) -> None:
        """Refuse a conditioning without the image's (a prompt-only call of an image-to-video model) in one line."""
        missing = [k for k in self.image_keys if k not in cond]
        if missing:
            raise AccVideoError(
                f"the image-to-video model got no image conditioning ({', '.join(missing)}); give it an image "
                '(--image FILE, or an "image" in each JSONL prompt row)'
            )


class WanI2VAdapter(FirstFrameImage, WanAdapter):
    """Wan 2.1 I2V: UMT5 text encoder, CLIP vision encoder, WanTransformer3DModel (36 in, 16 out), AutoencoderKLWan."""

    components = (*WanAdapter.components, "image_encoder", "image_processor")
    image_keys = ("image_embeds", "condition")

    def __init__(self, pipe, **kw):
        super().__init__(pipe, **kw)
        cfg = self.transformer.config
        self.latent_channels = cfg.out_channels  # the sampler integrates the noise channels only
        self.condition_channels = cfg.in_channels - cfg.out_channels  # first-frame mask + first-frame latent

    @classmethod
    def load(cls, path: Path, **kw):
        """Load a local diffusers-format Wan 2.1 I2V directory (one image; FLF2V refused)."""
        adapter = super().load(path, **kw)
        cfg = adapter.transformer.config
        if cfg.image_dim is None:
            raise AccVideoError(f"{path}: its transformer has no image_dim (not a Wan 2.1 I2V transformer); re-save it")
        if cfg.get("pos_embed_seq_len") is not None:  # FLF2V embeds a first and a last frame's CLIP states
            raise AccVideoError(
                f"{path} holds a first-last-frame (FLF2V) transformer; accvideo supports one-image Wan 2.1 I2V only"
            )
        return adapter

    # --- image ----------------------------------------------------------------------------------
    def _encode_image(self, image, frames: int, height: int, width: int) -> Conditioning:
        """{"image_embeds": (1, T, D) CLIP penultimate states, "condition": (1, 4 + C, F', H', W') first-frame mask
        and VAE latent}, by the pipeline's own `encode_image` and `prepare_latents`."""
        (condition,) = self._first_frame(image, frames, height, width)
        return {"image_embeds": self.pipe.encode_image(image, self.device), "condition": condition}

    # --- transformer ----------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        self._image_conditioning(cond)
        condition = cond["condition"].to(self.device, self.dtype)
        return self.transformer(
            hidden_states=torch.cat([x.to(self.dtype), condition], dim=1),
            timestep=self._timestep(x, sigma),
            encoder_hidden_states=cond["prompt_embeds"].to(self.device, self.dtype),
            encoder_hidden_states_image=cond["image_embeds"].to(self.device, self.dtype),
            return_dict=False,
        )[0]
