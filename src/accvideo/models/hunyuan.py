"""HunyuanVideo T2V behind the model seam, wrapping diffusers' HunyuanVideoPipeline components.

Differences from Wan that the seam hides: two text encoders (Llama hidden states + CLIP pooled output) through
the pipeline's own `encode_prompt`; an embedded guidance scalar passed to every transformer call instead of CFG
(true CFG stays available: a plan with guidance != 1 makes the sampler add an unconditional pass); dual-stream
blocks then single-stream blocks, both returning (video tokens, text tokens), counted as one depth for feature
blocks (docs/method.md 3: 20 + 40 = 60 blocks).

Optional `accvideo.json` at the pipeline root sets the text settings a checkpoint needs (tiny test pipelines
use {"prompt_template": {"template": "{}", "crop_start": 0}}); stock diffusers users pass the same values.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from accvideo.core.adapter import Conditioning
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
from accvideo.models.defaults import SETTINGS_FILE, TEXT_KEYS, folder_settings

EMBEDDED_GUIDANCE = 6.0  # HunyuanVideoPipeline's default guidance_scale (the embedded scalar)
MAX_SEQUENCE_LENGTH = 256  # Llama tokens after the template is cropped, as the pipeline defaults


def text_settings(path: str | Path) -> dict:
    """{prompt_template (None: the pipeline's own), max_sequence_length, embedded_guidance} of a pipeline folder."""
    settings = {
        "prompt_template": None,
        "max_sequence_length": MAX_SEQUENCE_LENGTH,
        "embedded_guidance": EMBEDDED_GUIDANCE,
    }
    settings.update({k: v for k, v in folder_settings(path).items() if k in TEXT_KEYS})
    return settings


def check_crop_start(template: dict | None, tokenizer, where: str) -> None:
    """Refuse a prompt_template whose crop_start is not smaller than the template's token count (the prompt left
    out): the pipeline crops that many tokens off every prompt's front, so the prompt's own went too and its
    embeddings were padding alone (NaN latents, blamed on --guidance). `where` names the settings file."""
    if template is None or not template["crop_start"] or tokenizer is None:
        return
    count = len(tokenizer(template["template"].format(""))["input_ids"])
    if template["crop_start"] >= count:
        raise AccVideoError(
            f"{where}: prompt_template crop_start {template['crop_start']} crops the whole template ({count} "
            "tokens without the prompt) and the prompt with it; give the count of tokens before its {} "
            "(HunyuanVideo's template: 95)"
        )


def folder_tokenizer(path: str | Path):
    """The Llama tokenizer of a pipeline folder, loaded alone (seconds), or None when it does not load so (the
    pipeline's loader then says what is wrong, and the adapter checks its own tokenizer)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(Path(path) / "tokenizer"), local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure: the pipeline's loader says it in its own words
        return None


class HunyuanVideoAdapter(TransformerAdapter):
    """HunyuanVideo text-to-video: Llama + CLIP text encoders, HunyuanVideoTransformer3DModel, its causal 3D VAE."""

    family = "hunyuanvideo"
    pipeline_class = "HunyuanVideoPipeline"
    components = ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler")
    frame_step = 4  # the VAE compresses time 4x: frames = 4k + 1
    block_count_keys = ("num_layers", "num_single_layers")  # dual-stream, then single-stream blocks (no refiner)
    fallback_shift = 7.0  # docs/method.md: HunyuanVideo's shift
    default_guidance = 1.0  # no true CFG: the embedded guidance scalar goes into every call instead

    def __init__(
        self,
        pipe,
        *,
        prompt_template: dict | None = None,
        max_sequence_length: int = MAX_SEQUENCE_LENGTH,
        embedded_guidance: float = EMBEDDED_GUIDANCE,
        vae_tiling: bool = False,
        vae_config=None,
        device=None,
    ):
        from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

        self.pipe = pipe
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        # a transformer built on the meta device (LoadParts.empty_transformer) runs on `device` once filled
        self.device = torch.device(device) if device is not None else self.transformer.device
        self.dtype = self.transformer.dtype
        cfg = self.transformer.config
        self.patch_size = (cfg.patch_size_t, cfg.patch_size, cfg.patch_size)
        self.num_dual_blocks = len(self.transformer.transformer_blocks)
        self.num_blocks = self.num_dual_blocks + len(self.transformer.single_transformer_blocks)
        self.latent_channels = cfg.in_channels
        vae_cfg = self.vae.config if self.vae is not None else vae_config  # the VAE's geometry, loaded or not
        self.spatial_factor = vae_cfg.spatial_compression_ratio
        self.temporal_factor = vae_cfg.temporal_compression_ratio
        self.scaling_factor = vae_cfg.scaling_factor
        self.size_multiple = self.spatial_factor * cfg.patch_size
        self.prompt_template = prompt_template or DEFAULT_PROMPT_TEMPLATE
        check_crop_start(prompt_template, getattr(pipe, "tokenizer", None), SETTINGS_FILE)
        self.max_sequence_length = int(max_sequence_length)
        self.embedded_guidance = float(embedded_guidance)
        sched = pipe.scheduler.config
        self.default_shift = scheduler_shift(sched, self.fallback_shift)
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
        """Load a local diffusers-format HunyuanVideo directory (the one holding model_index.json), `parts` of it."""
        from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel

        from accvideo.models import pipeline_class  # here: accvideo.models imports this module

        found = pipeline_class(path)
        if found != cls.pipeline_class:
            raise AccVideoError(
                f"{path} holds a {found}, not a {cls.pipeline_class}; pass a HunyuanVideo T2V "
                "diffusers folder (or load it with accvideo.models.load_adapter)"
            )
        settings = {**text_settings(path), **kw}
        if parts.text and settings["prompt_template"] is not None:  # before any weight is read
            check_crop_start(settings["prompt_template"], folder_tokenizer(path), str(path / SETTINGS_FILE))
        pipe = load_pipeline(HunyuanVideoPipeline, path, dtype, device, parts, HunyuanVideoTransformer3DModel)
        vae_config = None if pipe.vae is not None else empty_config(AutoencoderKLHunyuanVideo, path / "vae")
        return cls(pipe, vae_config=vae_config, device=device, **settings)

    # --- text -----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        """{"prompt_embeds": (B, L, D_llama), "prompt_attention_mask": (B, L), "pooled_prompt_embeds": (B, D_clip)}."""
        embeds, pooled, mask = self.pipe.encode_prompt(
            list(prompts),
            prompt_template=self.prompt_template,
            device=self.device,
            max_sequence_length=self.max_sequence_length,
        )
        # the pipeline casts all three (the mask too) to the transformer's dtype before its loop
        return {
            "prompt_embeds": embeds.to(self.dtype),
            "prompt_attention_mask": mask.to(self.dtype),
            "pooled_prompt_embeds": pooled.to(self.dtype),
        }

    # --- transformer ----------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        b = x.shape[0]
        timestep = (1000.0 * sigma).to(x.device, torch.float32).expand(b)
        guidance = torch.full((b,), self.embedded_guidance, device=x.device, dtype=self.dtype) * 1000.0
        return self.transformer(
            hidden_states=x.to(self.dtype),
            timestep=timestep,
            encoder_hidden_states=cond["prompt_embeds"].to(self.device, self.dtype),
            encoder_attention_mask=cond["prompt_attention_mask"].to(self.device, self.dtype),
            pooled_projections=cond["pooled_prompt_embeds"].to(self.device, self.dtype),
            guidance=guidance,
            return_dict=False,
        )[0]

    def block(self, index: int) -> torch.nn.Module:
        """Block `index` counted over the dual-stream blocks, then the single-stream ones."""
        index = self.check_block(index)
        if index < self.num_dual_blocks:
            return self.transformer.transformer_blocks[index]
        return self.transformer.single_transformer_blocks[index - self.num_dual_blocks]

    # --- VAE ------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, F', H', W') -> video (B, F, H, W, 3) in [0, 1], as HunyuanVideoPipeline decodes."""
        z = latents.to(self.vae.device, self.vae.dtype) / self.scaling_factor
        video = self.vae.decode(z, return_dict=False)[0]
        return vae_video(video)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video (B, F, H, W, 3) in [0, 1] -> scaled latents (B, C, F', H', W'): decode's inverse."""
        x = (video.permute(0, 4, 1, 2, 3) * 2 - 1).to(self.vae.device, self.vae.dtype)
        return (self.vae.encode(x).latent_dist.mode().float() * self.scaling_factor).to(self.device)
