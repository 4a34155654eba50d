"""Wan 2.1 T2V behind the model seam, wrapping diffusers' WanPipeline components."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from accvideo.core.adapter import Conditioning
from accvideo.core.inputs import is_int, read_json
from accvideo.errors import AccVideoError
from accvideo.models.base import (
    WHOLE,
    LoadParts,
    TransformerAdapter,
    empty_config,
    load_pipeline,
    scheduler_shift,
    vae_video,
)

# AutoencoderKLWan's defaults for the keys that fix its geometry (a config.json may leave them out)
VAE_DEFAULTS = {
    "scale_factor_temporal": 4,
    "scale_factor_spatial": 8,
    "temperal_downsample": [False, True, True],
    "dim_mult": [1, 2, 4, 4],
    "patch_size": None,
}
VAE_FIX = "restore the config.json or re-download the pipeline"


def implied_factors(cfg: Mapping, where: str) -> tuple[int, int]:
    """(temporal, spatial) compression the Wan VAE's layers make: each of the first len(dim_mult) - 1 levels halves
    the sides and, where `temperal_downsample` says so, time; a `patch_size` (Wan 2.2) divides the sides again."""
    downs, mult, patch = (cfg.get(k, VAE_DEFAULTS[k]) for k in ("temperal_downsample", "dim_mult", "patch_size"))
    levels = len(mult) - 1 if isinstance(mult, list) and mult else -1
    patch_ok = patch is None or (is_int(patch) and patch > 0)
    if levels < 0 or not isinstance(downs, list) or len(downs) < levels or not patch_ok:
        raise AccVideoError(
            f"{where} gives dim_mult {mult!r}, temperal_downsample {downs!r} and patch_size {patch!r}, which describe "
            f"no Wan VAE; {VAE_FIX}"
        )
    return 2 ** sum(bool(d) for d in downs[:levels]), 2**levels * (patch or 1)


def check_vae_factors(cfg: Mapping, where: str, frame_step: int = 4) -> tuple[int, int]:
    """(scale_factor_temporal, scale_factor_spatial) of a Wan VAE config (`where` names its file), refused in one
    line unless positive integers equal to what its layers make, and time compressed `frame_step`x as the adapter
    samples (frames = 4k + 1; the VAE encodes 4 frames a chunk): a 3 made 17 frames for --frames 13, a 0 divided."""
    temporal, spatial = (cfg.get(k, VAE_DEFAULTS[k]) for k in ("scale_factor_temporal", "scale_factor_spatial"))
    for name, value in (("scale_factor_temporal", temporal), ("scale_factor_spatial", spatial)):
        if not (is_int(value) and value > 0):
            raise AccVideoError(f"{where} gives {name} {value!r}, not a positive integer; {VAE_FIX}")
    made_t, made_s = implied_factors(cfg, where)
    for name, value, made in (("scale_factor_temporal", temporal, made_t), ("scale_factor_spatial", spatial, made_s)):
        if value != made:
            raise AccVideoError(
                f"{where} gives {name} {value}, but the VAE its layers describe (temperal_downsample, dim_mult, "
                f"patch_size) compresses {made}x; {VAE_FIX}"
            )
    if temporal != frame_step:
        raise AccVideoError(
            f"{where} describes a VAE that compresses time {temporal}x; the Wan VAE (and this adapter, which samples "
            f"{frame_step}k+1 frames) compresses it {frame_step}x; {VAE_FIX}"
        )
    return temporal, spatial


class WanAdapter(TransformerAdapter):
    """Wan 2.1 text-to-video: UMT5 text encoder, WanTransformer3DModel, AutoencoderKLWan."""

    family = "wan"
    pipeline_class = "WanPipeline"
    components = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    frame_step = 4  # the Wan VAE compresses time 4x: frames = 4k + 1
    block_count_keys = ("num_layers",)  # WanTransformer3DModel's blocks (each expert's, for Wan 2.2 A14B)
    fallback_shift = 5.0  # Wan 2.1's shift for 720p; 480p checkpoints often ship 3.0
    default_guidance = 5.0  # the teacher's CFG scale (Wan 2.1's default)

    def __init__(
        self, pipe, *, max_sequence_length: int | None = None, vae_tiling: bool = False, vae_config=None, device=None
    ):
        self.pipe = pipe
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        # a transformer built on the meta device (LoadParts.empty_transformer) runs on `device` once filled
        self.device = torch.device(device) if device is not None else self.transformer.device
        self.dtype = self.transformer.dtype
        cfg = self.transformer.config
        self.patch_size = tuple(cfg.patch_size)
        self.num_blocks = len(self.transformer.blocks)
        self.latent_channels = cfg.in_channels
        vae_cfg = self.vae.config if self.vae is not None else vae_config  # the VAE's geometry, loaded or not
        self.temporal_factor, self.spatial_factor = check_vae_factors(vae_cfg, "vae/config.json", self.frame_step)
        self.size_multiple = self.spatial_factor * self.patch_size[1]
        tok_max = getattr(pipe.tokenizer, "model_max_length", 512) or 512
        self.max_sequence_length = max_sequence_length or int(min(512, tok_max))
        sched = pipe.scheduler.config
        self.default_shift = scheduler_shift(sched, self.fallback_shift)
        z = vae_cfg.z_dim
        self._latents_mean = torch.tensor(vae_cfg.latents_mean).view(1, z, 1, 1, 1)
        self._latents_std = torch.tensor(vae_cfg.latents_std).view(1, z, 1, 1, 1)
        if vae_tiling and self.vae is not None:
            self.vae.enable_tiling()

    @classmethod
    def check_vae_config(cls, path: Path) -> None:
        """The VAE's factors from the folder's vae/config.json, refused before any weight is read."""
        vae_file = path / "vae" / "config.json"
        vae_cfg = read_json(vae_file, VAE_FIX)
        check_vae_factors(vae_cfg if isinstance(vae_cfg, dict) else {}, str(vae_file), cls.frame_step)

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
        """Load a local diffusers-format Wan 2.1 directory (the one holding model_index.json), `parts` of it."""
        import diffusers
        from diffusers import AutoencoderKLWan, WanTransformer3DModel

        # WanPipeline; WanImageToVideoPipeline (models/wan_i2v.py); an adapter of your own pipeline class that saves
        # the Wan components names the stock class that loads them as `loads_as` (docs/own-model.md)
        pipeline = getattr(diffusers, cls.loads_as or cls.pipeline_class)
        cls.check_vae_config(path)
        pipe = load_pipeline(pipeline, path, dtype, device, parts, WanTransformer3DModel)
        if getattr(pipe, "transformer", None) is None:
            raise AccVideoError(f"{path} has no transformer component; point --model at a Wan 2.1 pipeline")
        vae_config = None if pipe.vae is not None else empty_config(AutoencoderKLWan, path / "vae")
        return cls(pipe, vae_config=vae_config, device=device, **kw)

    # --- text -----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        """{"prompt_embeds": (B, L, text_dim)}, zero past each prompt's length as WanPipeline pads."""
        embeds, _ = self.pipe.encode_prompt(
            list(prompts),
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=self.device,
        )
        return {"prompt_embeds": embeds.to(self.dtype)}

    # --- transformer ----------------------------------------------------------------------------
    def _timestep(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The transformer's timestep input: 1000 sigma per item (B,)."""
        return (1000.0 * sigma).to(x.device).expand(x.shape[0])

    def _forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.transformer(
            hidden_states=x.to(self.dtype),
            timestep=self._timestep(x, sigma),
            encoder_hidden_states=cond["prompt_embeds"].to(self.device, self.dtype),
            return_dict=False,
        )[0]

    def block(self, index: int) -> torch.nn.Module:
        """Transformer block `index` (its output is the feature at that depth)."""
        return self.transformer.blocks[self.check_block(index)]

    # --- VAE ------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, F', H', W') -> video (B, F, H, W, 3) in [0, 1], as WanPipeline decodes."""
        vae_dtype = self.vae.dtype
        z = latents.to(self.vae.device, vae_dtype)
        z = z * self._latents_std.to(z) + self._latents_mean.to(z)
        video = self.vae.decode(z, return_dict=False)[0]
        return vae_video(video)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video (B, F, H, W, 3) in [0, 1] -> normalised latents (B, C, F', H', W'): decode's inverse."""
        x = (video.permute(0, 4, 1, 2, 3) * 2 - 1).to(self.vae.device, self.vae.dtype)
        z = self.vae.encode(x).latent_dist.mode().float()
        return ((z - self._latents_mean.to(z)) / self._latents_std.to(z)).to(self.device)
