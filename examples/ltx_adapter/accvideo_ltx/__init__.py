"""LTX-Video behind accvideo's model seam: an example plugin for a family accvideo does not build in.

It wraps diffusers' `LTXPipeline` components (T5 text encoder, `LTXVideoTransformer3DModel`,
`AutoencoderKLLTXVideo`, `FlowMatchEulerDiscreteScheduler`) and calls them as `LTXPipeline.__call__` does. What differs
from Wan and HunyuanVideo, and what this adapter hides from accvideo:

- The transformer takes packed tokens (B, F'H'W', C), not a (B, C, F', H', W') video: `_forward` packs accvideo's
  latents frame-major (the order of `token_grid`) and unpacks the velocity, and passes the token grid and the rotary
  `rope_interpolation_scale` (VAE compression over the frame rate in time) the pipeline passes.
- The text conditioning is the T5 embeddings and their attention mask, both stored (`encode_prompts`).
- The VAE compresses 8x in time and 32x in space (frames 8k + 1, sizes multiple of 32), normalises latents with its
  `latents_mean`/`latents_std` buffers and `scaling_factor`, and its decoder may be conditioned on a timestep (LTX
  0.9.1 and later), for which `decode` passes `decode_timestep` as the pipeline does.
- The scheduler shifts sigmas by sequence length (`use_dynamic_shifting`); accvideo's plans take one shift, so
  `default_shift` is the one LTXPipeline uses at the scheduler's `max_image_seq_len` (pass `--shift` for another).

Register it with `pip install` of this folder (entry point `ltx` in the `accvideo.adapters` group) or with
`accvideo.models.register_adapter(LTXAdapter)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from accvideo.core.adapter import Conditioning
from accvideo.errors import AccVideoError
from accvideo.models.base import WHOLE, LoadParts, TransformerAdapter, empty_module, load_pipeline, scheduler_shift
from accvideo.models.defaults import folder_settings

__all__ = ["LTXAdapter", "pack", "unpack"]

MAX_SEQUENCE_LENGTH = 128  # T5 tokens, LTXPipeline's default
FRAME_RATE = 25  # LTXPipeline's default frame_rate, which sets the rotary time scale


def pack(x: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """Latents (B, C, F, H, W) -> tokens (B, F/pt * H/ph * W/pw, C*pt*ph*pw), frame-major: LTXPipeline's packing."""
    b, c, f, h, w = x.shape
    pt, ph, pw = patch
    x = x.reshape(b, c, f // pt, pt, h // ph, ph, w // pw, pw)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (f // pt) * (h // ph) * (w // pw), c * pt * ph * pw)


def unpack(tokens: torch.Tensor, grid: tuple[int, int, int], patch: tuple[int, int, int]) -> torch.Tensor:
    """Tokens (B, F*H*W, C*pt*ph*pw) on the token grid (F, H, W) -> latents (B, C, F*pt, H*ph, W*pw): `pack`'s
    inverse."""
    b = tokens.shape[0]
    f, h, w = grid
    pt, ph, pw = patch
    x = tokens.reshape(b, f, h, w, -1, pt, ph, pw)
    return x.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, -1, f * pt, h * ph, w * pw)


def dynamic_shift(config) -> float | None:
    """The static shift equal to the scheduler's dynamic one at its `max_image_seq_len` (where LTXPipeline's mu is
    `max_shift`), or None for a scheduler without dynamic shifting."""
    if not config.get("use_dynamic_shifting"):
        return None
    mu = float(config.get("max_shift", 1.15))
    return math.exp(mu) if config.get("time_shift_type", "exponential") == "exponential" else mu


class LTXAdapter(TransformerAdapter):
    """LTX-Video text-to-video: T5 text encoder, LTXVideoTransformer3DModel, AutoencoderKLLTXVideo."""

    family = "ltx"
    pipeline_class = "LTXPipeline"
    components = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    frame_step = 8  # the LTX VAE compresses time 8x: frames = 8k + 1 (an instance takes its VAE's own factor)
    default_guidance = 3.0  # LTXPipeline's guidance_scale: true CFG against the negative prompt
    fallback_shift = 1.0  # a scheduler config without shift or dynamic shifting

    def __init__(
        self,
        pipe,
        *,
        max_sequence_length: int = MAX_SEQUENCE_LENGTH,
        frame_rate: float = FRAME_RATE,
        decode_timestep: float = 0.0,
        decode_noise_scale: float | None = None,
        vae_tiling: bool = False,
        vae_geometry=None,
        device=None,
    ):
        self.pipe = pipe
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        # a transformer built on the meta device (LoadParts.empty_transformer) runs on `device` once filled
        self.device = torch.device(device) if device is not None else self.transformer.device
        self.dtype = self.transformer.dtype
        cfg = self.transformer.config
        self.patch_size = (cfg.patch_size_t, cfg.patch_size, cfg.patch_size)
        self.num_blocks = len(self.transformer.transformer_blocks)
        self.latent_channels = cfg.in_channels
        vae = self.vae if self.vae is not None else vae_geometry  # the VAE's geometry, loaded or not
        self.spatial_factor = vae.spatial_compression_ratio
        self.temporal_factor = vae.temporal_compression_ratio
        self.frame_step = self.temporal_factor
        self.size_multiple = self.spatial_factor * cfg.patch_size
        self.scaling_factor = vae.config.scaling_factor
        self.timestep_conditioning = bool(vae.config.timestep_conditioning)
        self.max_sequence_length = int(max_sequence_length)
        # LTXPipeline: (temporal compression / frame rate, spatial compression, spatial compression)
        self.rope_interpolation_scale = (self.temporal_factor / frame_rate, self.spatial_factor, self.spatial_factor)
        self.decode_timestep = float(decode_timestep)
        self.decode_noise_scale = float(decode_timestep if decode_noise_scale is None else decode_noise_scale)
        sched = pipe.scheduler.config
        self.default_shift = dynamic_shift(sched) or scheduler_shift(sched, self.fallback_shift)
        if vae_tiling and self.vae is not None:
            self.vae.enable_tiling()

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
        """Load a local diffusers-format LTX-Video folder (the one holding model_index.json), `parts` of it.

        An `accvideo.json` there may set `max_sequence_length` (T5 tokens; default LTXPipeline's 128)."""
        from diffusers import AutoencoderKLLTXVideo, LTXPipeline, LTXVideoTransformer3DModel

        pipe = load_pipeline(LTXPipeline, Path(path), dtype, device, parts, LTXVideoTransformer3DModel)
        if getattr(pipe, "transformer", None) is None:
            raise AccVideoError(f"{path} has no transformer component; point --model at an LTX-Video pipeline")
        # without the VAE (distillation), its compression factors come from a weightless copy built from its config
        geometry = None if pipe.vae is not None else empty_module(AutoencoderKLLTXVideo, Path(path) / "vae")
        settings = {k: v for k, v in folder_settings(path).items() if k == "max_sequence_length"}
        return cls(pipe, vae_geometry=geometry, device=device, **{**settings, **kw})

    # --- text -----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        """{"prompt_embeds": (B, L, D_t5), "prompt_attention_mask": (B, L)}: LTXPipeline pads every prompt to
        `max_sequence_length` tokens and masks the padding out of the transformer's cross-attention, so both are
        needed. The mask is stored in the model's dtype (1 keep, 0 drop), as the transformer reads it either way."""
        embeds, mask, _, _ = self.pipe.encode_prompt(
            list(prompts),
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=self.device,
        )
        return {"prompt_embeds": embeds.to(self.dtype), "prompt_attention_mask": mask.to(self.dtype)}

    # --- transformer ----------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The velocity eps - x0 (B, C, F', H', W'): x packed into tokens, one transformer call, unpacked."""
        grid = self.token_grid(x.shape)
        out = self.transformer(
            hidden_states=pack(x.to(self.dtype), self.patch_size),
            encoder_hidden_states=cond["prompt_embeds"].to(self.device, self.dtype),
            timestep=(1000.0 * sigma).to(x.device, torch.float32).expand(x.shape[0]),
            encoder_attention_mask=cond["prompt_attention_mask"].to(self.device, self.dtype),
            # the token grid (LTXPipeline passes the latent grid: the same for LTX's patch size 1)
            num_frames=grid[0],
            height=grid[1],
            width=grid[2],
            rope_interpolation_scale=self.rope_interpolation_scale,
            return_dict=False,
        )[0]
        return unpack(out, grid, self.patch_size)

    def block(self, index: int) -> torch.nn.Module:
        """Transformer block `index`; it returns the video tokens (B, tokens, dim) in `token_grid`'s frame-major
        order, which `features` takes as they are."""
        return self.transformer.transformer_blocks[self.check_block(index)]

    # --- VAE ------------------------------------------------------------------------------------
    def _stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE's per-channel latents mean and std (buffers saved with its weights), shaped to broadcast over z."""
        shape = (1, -1, 1, 1, 1)
        return self.vae.latents_mean.view(shape).to(z), self.vae.latents_std.view(shape).to(z)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, F', H', W') -> video (B, F, H, W, 3) in [0, 1], as LTXPipeline decodes: denormalised, and
        for a timestep-conditioned decoder mixed with `decode_noise_scale` of noise and decoded at
        `decode_timestep` (both 0 by default, as the pipeline's; the noise is seeded, so decoding is repeatable)."""
        z = latents.to(self.vae.device, torch.float32)
        mean, std = self._stats(z)
        z = z * std / self.scaling_factor + mean
        temb = None
        if self.timestep_conditioning:
            temb = torch.full((z.shape[0],), self.decode_timestep, device=z.device, dtype=z.dtype)
            if self.decode_noise_scale:
                generator = torch.Generator(device=z.device).manual_seed(0)
                eps = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
                z = (1 - self.decode_noise_scale) * z + self.decode_noise_scale * eps
            temb = temb.to(self.vae.dtype)
        video = self.vae.decode(z.to(self.vae.dtype), temb, return_dict=False)[0]
        return (video.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 4, 1).cpu()

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video (B, F, H, W, 3) in [0, 1] -> normalised latents (B, C, F', H', W'), the posterior's mode: decode's
        inverse (as LTX's image-to-video pipeline normalises its encoded frames)."""
        x = (video.permute(0, 4, 1, 2, 3) * 2 - 1).to(self.vae.device, self.vae.dtype)
        z = self.vae.encode(x).latent_dist.mode().float()
        mean, std = self._stats(z)
        return ((z - mean) * self.scaling_factor / std).to(self.device)
