"""Real-size pipelines with random weights, so speed can be measured without checkpoints (`bench --random-weights`).

The configs are those of the published diffusers checkpoints (transformer, text encoder and VAE sizes); the
tokenizer is an in-memory word-level one padded to the real sequence length, so every stage does the work the
real model does. Weights are created directly on the device in the benchmark dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch

from accvideo.errors import AccVideoError
from accvideo.models.hunyuan import HunyuanVideoAdapter
from accvideo.models.tiny import word_tokenizer
from accvideo.models.wan import WanAdapter
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
) -> Callable:
    def build(device: torch.device, dtype: torch.dtype):
        from diffusers import (
            AutoencoderKLWan,
            FlowMatchEulerDiscreteScheduler,
            WanPipeline,
            WanTransformer3DModel,
        )
        from transformers import UMT5Config, UMT5EncoderModel

        with torch.device(device), _default_dtype(dtype):
            text_encoder = UMT5EncoderModel(UMT5Config(**text)).eval()
            transformer = WanTransformer3DModel(
                patch_size=(1, 2, 2),
                num_attention_heads=dim_heads,
                attention_head_dim=128,
                in_channels=16,
                out_channels=16,
                text_dim=text["d_model"],
                freq_dim=256,
                ffn_dim=ffn,
                num_layers=layers,
                cross_attn_norm=True,
                qk_norm="rms_norm_across_heads",
                eps=1e-6,
                rope_max_seq_len=1024,
            ).eval()
            vae_module = AutoencoderKLWan(**(vae or {})).eval()  # the defaults are Wan 2.1's VAE
        tokenizer = word_tokenizer(vocabulary(), max_length=max_length)
        pipe = WanPipeline(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            transformer=transformer,
            vae=vae_module,
            scheduler=FlowMatchEulerDiscreteScheduler(shift=shift),
        )
        for module in (text_encoder, transformer, vae_module):
            module.requires_grad_(False)
        return WanAdapter(pipe, max_sequence_length=max_length)

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

# name -> builder(device, dtype) -> ModelAdapter
RANDOM_CONFIGS: dict[str, Callable] = {
    "wan2.1-t2v-1.3b": wan_builder(dim_heads=12, layers=30, ffn=8960, text=UMT5_XXL),
    "wan2.1-t2v-14b": wan_builder(dim_heads=40, layers=40, ffn=13824, text=UMT5_XXL),
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
    "wan-tiny": wan_builder(
        dim_heads=2,
        layers=2,
        ffn=64,
        text=dict(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=256, is_encoder_decoder=False),
        vae=dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2]),
        max_length=32,
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


def build_random(name: str, device: torch.device, dtype: torch.dtype):
    """The adapter of a real-size (or a *-tiny) pipeline with random weights."""
    if name not in RANDOM_CONFIGS:
        raise AccVideoError(f"unknown --arch {name!r}; choose one of {', '.join(RANDOM_CONFIGS)}")
    torch.manual_seed(0)
    return RANDOM_CONFIGS[name](device, dtype)
