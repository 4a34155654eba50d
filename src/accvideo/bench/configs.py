"""Real-size pipelines with random weights, so speed can be measured without checkpoints (`bench --random-weights`).

The configs are those of the published diffusers checkpoints (transformer, text encoder and VAE sizes); the
tokenizer is an in-memory word-level one padded to the real sequence length, so every stage does the work the
real model does. Weights are created directly on the device in the benchmark dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch

from accvideo.bench.layouts import WanI2VLayout
from accvideo.errors import AccVideoError
from accvideo.models.hunyuan import HunyuanVideoAdapter
from accvideo.models.tiny import TINY_CLIP_VISION, word_tokenizer
from accvideo.models.wan import WanAdapter
from accvideo.models.wan_ti2v import WanTI2VAdapter
from accvideo.world import vocabulary


@contextmanager
def _default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def wan_builder(
    *,
    dim_heads: int,
    layers: int,
    ffn: int,
    text: dict,
    vae: dict | None = None,
    shift: float = 3.0,
    max_length: int = 512,
    channels: tuple[int, int] = (16, 16),
    image_encoder: dict | None = None,
    boundary_ratio: float | None = None,
    expand_timesteps: bool = False,
) -> Callable:
    """Wan 2.1 T2V by default; `image_encoder` (a CLIPVisionConfig) makes Wan 2.1 I2V (WanImageToVideoPipeline's
    forward layout, bench/layouts.py; the transformer's image cross-attention sized from it), `boundary_ratio` Wan 2.2
    A14B (a second expert `transformer_2` of the same size), `expand_timesteps` Wan 2.2 TI2V (models/wan_ti2v.py)."""

    def build(device: torch.device, dtype: torch.dtype):
        from diffusers import (
            AutoencoderKLWan,
            FlowMatchEulerDiscreteScheduler,
            WanPipeline,
            WanTransformer3DModel,
        )
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, UMT5Config, UMT5EncoderModel

        image = {}
        if image_encoder is not None:
            image = dict(image_dim=image_encoder["hidden_size"], added_kv_proj_dim=dim_heads * 128)

        def transformer():
            return WanTransformer3DModel(
                patch_size=(1, 2, 2),
                num_attention_heads=dim_heads,
                attention_head_dim=128,
                in_channels=channels[0],
                out_channels=channels[1],
                text_dim=text["d_model"],
                freq_dim=256,
                ffn_dim=ffn,
                num_layers=layers,
                cross_attn_norm=True,
                qk_norm="rms_norm_across_heads",
                eps=1e-6,
                rope_max_seq_len=1024,
                **image,
            ).eval()

        with torch.device(device), _default_dtype(dtype):
            modules = dict(
                text_encoder=UMT5EncoderModel(UMT5Config(**text)).eval(),
                transformer=transformer(),
                vae=AutoencoderKLWan(**(vae or {})).eval(),  # the defaults are Wan 2.1's VAE
            )
            if boundary_ratio is not None:
                modules["transformer_2"] = transformer()  # the low-noise expert: the same architecture
            encoder = (
                None if image_encoder is None else CLIPVisionModelWithProjection(CLIPVisionConfig(**image_encoder))
            )
        for module in (*modules.values(), encoder):
            if module is not None:
                module.eval().requires_grad_(False)
        pipe = WanPipeline(
            tokenizer=word_tokenizer(vocabulary(), max_length=max_length),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=shift),
            boundary_ratio=boundary_ratio,
            expand_timesteps=expand_timesteps,
            **modules,
        )
        if encoder is not None:
            # WanImageToVideoPipeline encodes text with the same T5 code but needs ftfy; the layout holds the encoder
            return WanI2VLayout(pipe, image_encoder=encoder, max_sequence_length=max_length)
        layout = WanTI2VAdapter if expand_timesteps else WanAdapter
        return layout(pipe, max_sequence_length=max_length)

    return build


def hunyuan_builder(
    *,
    heads: int,
    dual: int,
    single: int,
    refiner: int,
    llama: dict,
    clip: dict,
    vae: dict | None = None,
    rope_axes: tuple = (16, 56, 56),
    max_length: int = 256,
    template: dict | None = None,
) -> Callable:
    def build(device: torch.device, dtype: torch.dtype):
        from diffusers import (
            AutoencoderKLHunyuanVideo,
            FlowMatchEulerDiscreteScheduler,
            HunyuanVideoPipeline,
            HunyuanVideoTransformer3DModel,
        )
        from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
        from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

        prompt_template = template or DEFAULT_PROMPT_TEMPLATE
        tokenizer = word_tokenizer(vocabulary(), max_length + prompt_template["crop_start"])
        tokenizer_2 = word_tokenizer(vocabulary(), 77)
        ids = {
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.eos_token_id,
        }
        with torch.device(device), _default_dtype(dtype):
            text_encoder = LlamaModel(LlamaConfig(**llama, **ids)).eval()
            text_encoder_2 = CLIPTextModel(CLIPTextConfig(**clip, **ids)).eval()
            transformer = HunyuanVideoTransformer3DModel(
                in_channels=16,
                out_channels=16,
                num_attention_heads=heads,
                attention_head_dim=128,
                num_layers=dual,
                num_single_layers=single,
                num_refiner_layers=refiner,
                mlp_ratio=4.0,
                patch_size=2,
                patch_size_t=1,
                qk_norm="rms_norm",
                guidance_embeds=True,
                text_embed_dim=llama["hidden_size"],
                pooled_projection_dim=clip["projection_dim"],
                rope_theta=256.0,
                rope_axes_dim=rope_axes,
            ).eval()
            vae_module = AutoencoderKLHunyuanVideo(**(vae or {})).eval()  # the defaults are HunyuanVideo's VAE
        pipe = HunyuanVideoPipeline(
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
            vae=vae_module,
            scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
            text_encoder_2=text_encoder_2,
            tokenizer_2=tokenizer_2,
        )
        for module in (text_encoder, text_encoder_2, transformer, vae_module):
            module.requires_grad_(False)
        return HunyuanVideoAdapter(pipe, prompt_template=prompt_template, max_sequence_length=max_length)

    return build


UMT5_XXL = dict(
    d_model=4096,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    d_kv=64,
    vocab_size=256384,
    feed_forward_proj="gated-gelu",
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    is_encoder_decoder=False,
)

# Wan 2.1 I2V's image encoder: the vision tower of laion/CLIP-ViT-H-14-laion2B-s32B-b79K (632 M parameters)
CLIP_VIT_H = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=16,
    patch_size=14,
    image_size=224,
    projection_dim=1024,
    hidden_act="gelu",
)

# Wan 2.2's VAE (TI2V-5B): 48 latent channels, 16x spatial compression through a 2x2 patchify (diffusers'
# scripts/convert_wan_to_diffusers.py, `vae22_diffusers_config`)
WAN22_VAE = dict(
    base_dim=160,
    decoder_base_dim=256,
    z_dim=48,
    is_residual=True,
    in_channels=12,
    out_channels=12,
    patch_size=2,
    scale_factor_temporal=4,
    scale_factor_spatial=16,
    # fmt: off
    latents_mean=[
        -0.2289,
        -0.0052,
        -0.1323,
        -0.2339,
        -0.2799,
        0.0174,
        0.1838,
        0.1557,
        -0.1382,
        0.0542,
        0.2813,
        0.0891,
        0.1570,
        -0.0098,
        0.0375,
        -0.1825,
        -0.2246,
        -0.1207,
        -0.0698,
        0.5109,
        0.2665,
        -0.2108,
        -0.2158,
        0.2502,
        -0.2055,
        -0.0322,
        0.1109,
        0.1567,
        -0.0729,
        0.0899,
        -0.2799,
        -0.1230,
        -0.0313,
        -0.1649,
        0.0117,
        0.0723,
        -0.2839,
        -0.2083,
        -0.0520,
        0.3748,
        0.0152,
        0.1957,
        0.1433,
        -0.2944,
        0.3573,
        -0.0548,
        -0.1681,
        -0.0667,
    ],
    latents_std=[
        0.4765,
        1.0364,
        0.4514,
        1.1677,
        0.5313,
        0.4990,
        0.4818,
        0.5013,
        0.8158,
        1.0344,
        0.5894,
        1.0901,
        0.6885,
        0.6165,
        0.8454,
        0.4978,
        0.5759,
        0.3523,
        0.7135,
        0.6804,
        0.5833,
        1.4146,
        0.8986,
        0.5659,
        0.7069,
        0.5338,
        0.4889,
        0.4917,
        0.4069,
        0.4999,
        0.6866,
        0.4093,
        0.5709,
        0.6065,
        0.6415,
        0.4944,
        0.5726,
        1.2042,
        0.5458,
        1.6887,
        0.3971,
        1.0600,
        0.3943,
        0.5537,
        0.5444,
        0.4089,
        0.7468,
        0.7744,
    ],
    # fmt: on
)

TINY_TEXT = dict(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=256, is_encoder_decoder=False)
TINY_VAE = dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2])

# name -> builder(device, dtype) -> ModelAdapter
RANDOM_CONFIGS: dict[str, Callable] = {
    "wan2.1-t2v-1.3b": wan_builder(dim_heads=12, layers=30, ffn=8960, text=UMT5_XXL),
    "wan2.1-t2v-14b": wan_builder(dim_heads=40, layers=40, ffn=13824, text=UMT5_XXL),
    # Wan-AI/Wan2.1-I2V-14B-480P-Diffusers: the 14B backbone plus image cross-attention K/V (16.39 B in all)
    "wan2.1-i2v-14b-480p": wan_builder(
        dim_heads=40, layers=40, ffn=13824, text=UMT5_XXL, channels=(36, 16), image_encoder=CLIP_VIT_H
    ),
    # Wan-AI/Wan2.2-TI2V-5B-Diffusers: 30 x 3072, 48 latent channels, per-token timesteps
    "wan2.2-ti2v-5b": wan_builder(
        dim_heads=24,
        layers=30,
        ffn=14336,
        text=UMT5_XXL,
        channels=(48, 48),
        vae=WAN22_VAE,
        shift=5.0,
        expand_timesteps=True,
    ),
    # Wan-AI/Wan2.2-T2V-A14B-Diffusers: two 40 x 5120 experts, transformer (high noise) and transformer_2.
    # The Wan team's own inference config (wan/configs/wan_t2v_A14B.py, read in the copy ml-explore/mlx-examples keeps
    # under video/Wan2.2) samples at shift 12.0, 40 steps, boundary 0.875, guidance (3.0 low, 4.0 high noise); the
    # diffusers folder's scheduler_config.json was not available to check; shift stays 3.0 (timing only).
    "wan2.2-t2v-a14b": wan_builder(dim_heads=40, layers=40, ffn=13824, text=UMT5_XXL, boundary_ratio=0.875),
    "hunyuanvideo": hunyuan_builder(
        heads=24,
        dual=20,
        single=40,
        refiner=2,
        llama=dict(
            vocab_size=128320,
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            max_position_embeddings=8192,
            rope_theta=500000.0,
        ),
        clip=dict(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            projection_dim=768,
        ),
    ),
    # the same code paths at a size a CPU runs in seconds (tests, smoke runs)
    "wan-tiny": wan_builder(dim_heads=2, layers=2, ffn=64, text=TINY_TEXT, vae=TINY_VAE, max_length=32),
    "wan-i2v-tiny": wan_builder(
        dim_heads=2,
        layers=2,
        ffn=64,
        text=TINY_TEXT,
        vae=TINY_VAE,
        max_length=32,
        channels=(36, 16),
        image_encoder=TINY_CLIP_VISION,
    ),
    "wan22-ti2v-tiny": wan_builder(
        dim_heads=2,
        layers=2,
        ffn=64,
        text=TINY_TEXT,
        vae={**WAN22_VAE, "base_dim": 8, "decoder_base_dim": 8, "dim_mult": [1, 2, 2, 2]},
        max_length=32,
        channels=(48, 48),
        expand_timesteps=True,
    ),
    "wan22-a14b-tiny": wan_builder(
        dim_heads=2, layers=2, ffn=64, text=TINY_TEXT, vae=TINY_VAE, max_length=32, boundary_ratio=0.875
    ),
    "hunyuan-tiny": hunyuan_builder(
        heads=2,
        dual=1,
        single=1,
        refiner=1,
        rope_axes=(16, 56, 56),
        llama=dict(
            vocab_size=256,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=128,
        ),
        clip=dict(
            vocab_size=256,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=77,
            projection_dim=16,
        ),
        vae=dict(latent_channels=16, block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4),
        max_length=16,
        template={"template": "{}", "crop_start": 0},
    ),
}


# what `bench --random-weights` times for a family whose random build is not accvideo's own sampling adapter (the
# I2V layout of bench/layouts.py; A14B timed on one expert), written into bench.json and .md
_I2V = (
    "image-to-video layout: each step feeds 16 noise + 20 condition channels (zeros in place of the mask and the "
    "encoded first frame) and a CLIP image embedding; text encoding includes the CLIP image encoder (with each "
    "prompt encoding: twice with CFG, once in the stock pipeline); the VAE encode of the conditioning video is not "
    "timed"
)
_A14B = (
    "two experts (transformer for high noise, transformer_2 below boundary_ratio 0.875), both built; every step is "
    "timed on transformer: the experts have the same architecture, so the same step cost"
)
MEASURED: dict[str, str] = {
    "wan2.1-i2v-14b-480p": _I2V,
    "wan-i2v-tiny": _I2V,
    "wan2.2-t2v-a14b": _A14B,
    "wan22-a14b-tiny": _A14B,
}


def check_arch(name: str) -> None:
    if name not in RANDOM_CONFIGS:
        raise AccVideoError(f"unknown --arch {name!r}; choose one of {', '.join(RANDOM_CONFIGS)}")


def build_random(name: str, device: torch.device, dtype: torch.dtype):
    """The adapter of a real-size (or a *-tiny) pipeline with random weights."""
    check_arch(name)
    torch.manual_seed(0)
    return RANDOM_CONFIGS[name](device, dtype)
