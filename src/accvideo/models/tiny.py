"""Tiny random pipelines built from configs (no download), for tests and smoke runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from accvideo.core.tensorfile import share_files

# A small English vocabulary for tiny random models; the built-in model brings its own world's words.
TINY_WORDS = (
    "a an the on in of and with over under is moving still left right up down spinning "
    "red green blue yellow purple orange white black grey circle square triangle star cat dog "
    "background video of slowly quickly"
).split()


def tiny_t5_settings(tokenizer) -> dict:
    """A (U)T5 encoder config 32 wide and 2 layers deep for `tokenizer`'s vocabulary and special ids (the tiny
    families' text encoder; NOTES: set vocab_size and the pad/eos ids from the tokenizer)."""
    return {
        "vocab_size": len(tokenizer),
        "d_model": 32,
        "d_kv": 8,
        "d_ff": 37,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "decoder_start_token_id": tokenizer.pad_token_id,
    }


def word_tokenizer(words: Sequence[str], max_length: int = 32):
    """A Unigram T5 tokenizer over whole words plus single letters, built in memory: no download."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + w, -1.0) for w in dict.fromkeys(words)]
    # single letters let any word tokenize (badly) instead of collapsing to <unk>
    pieces += [("\u2581", -3.0)] + [(c, -6.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def tiny_wan_pipeline(seed: int = 0, *, num_layers: int = 2, shift: float = 5.0, max_length: int = 32):
    """A random Wan 2.1 pipeline small enough to generate in well under a second on a CPU."""
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = word_tokenizer(TINY_WORDS, max_length)
    torch.manual_seed(seed)  # diffusers/transformers initialise from the global RNG
    text_encoder = UMT5EncoderModel(UMT5Config(**tiny_t5_settings(tokenizer)))
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    return WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae, scheduler=scheduler
    )


def save_pipeline(pipe, out: str | Path) -> Path:
    """Write a diffusers pipeline as a directory of safetensors and return its path."""
    out = Path(out)
    pipe.save_pretrained(str(out), safe_serialization=True)
    share_files(out)  # save_pretrained writes weights with mode 600
    return out


def save_tiny_wan(out: str | Path, seed: int = 0, **kw) -> Path:
    """Write a tiny random Wan pipeline as a diffusers directory (safetensors) and return its path."""
    return save_pipeline(tiny_wan_pipeline(seed, **kw), out)


def tiny_wan_a14b_pipeline(seed: int = 0, *, boundary_ratio: float = 0.875, **kw):
    """A random Wan 2.2 A14B pipeline: the tiny Wan's components plus a second expert (other weights) as
    `transformer_2`, switched at `boundary_ratio`."""
    from diffusers import WanPipeline

    base = tiny_wan_pipeline(seed, **kw)
    second = tiny_wan_pipeline(seed + 1, **kw).transformer
    return WanPipeline(
        **{k: getattr(base, k) for k in ("tokenizer", "text_encoder", "transformer", "vae", "scheduler")},
        transformer_2=second,
        boundary_ratio=boundary_ratio,
    )


def save_tiny_wan_a14b(out: str | Path, seed: int = 0, **kw) -> Path:
    """Write a tiny random Wan 2.2 A14B pipeline as a diffusers directory and return its path."""
    return save_pipeline(tiny_wan_a14b_pipeline(seed, **kw), out)


# a 28 px CLIP vision tower: the tiny image-to-video models' image encoder (here and bench's `wan-i2v-tiny`)
TINY_CLIP_VISION = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    patch_size=14,
    image_size=28,
    projection_dim=16,
)


def tiny_wan_i2v_pipeline(seed: int = 0, *, num_layers: int = 2, shift: float = 5.0, max_length: int = 32):
    """A random Wan 2.1 image-to-video pipeline (WanImageToVideoPipeline): the tiny Wan's text encoder and VAE, a
    transformer taking 16 noise + 20 condition channels with image cross-attention, and a 28 px CLIP vision tower."""
    import transformers
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPVisionConfig, CLIPVisionModel

    # transformers 5 names the torchvision-free processor CLIPImageProcessorPil (and warns when CLIPImageProcessor
    # falls back to it); older versions have CLIPImageProcessor only
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor

    base = tiny_wan_pipeline(seed, num_layers=num_layers, shift=shift, max_length=max_length)
    heads, head_dim = 2, 12
    image_encoder = CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP_VISION))
    z, mask = base.vae.config.z_dim, base.vae.config.scale_factor_temporal  # condition: mask + first-frame latent
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=z + mask + z,
        out_channels=z,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=16,
        added_kv_proj_dim=heads * head_dim,
    )
    processor = processor_cls(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    return WanImageToVideoPipeline(
        tokenizer=base.tokenizer,
        text_encoder=base.text_encoder,
        vae=base.vae,
        scheduler=base.scheduler,
        image_processor=processor,
        image_encoder=image_encoder,
        transformer=transformer,
    )


def save_tiny_wan_i2v(out: str | Path, seed: int = 0, **kw) -> Path:
    """Write a tiny random Wan 2.1 I2V pipeline as a diffusers directory (safetensors) and return its path."""
    return save_pipeline(tiny_wan_i2v_pipeline(seed, **kw), out)


# What a tiny HunyuanVideo needs from HunyuanVideoAdapter (accvideo.json): no chat template around the prompt
TINY_HUNYUAN_TEXT = {"prompt_template": {"template": "{}", "crop_start": 0}, "max_sequence_length": 16}


def tiny_hunyuan_pipeline(seed: int = 0, *, num_layers: int = 1, num_single_layers: int = 2, shift: float = 7.0):
    """A random HunyuanVideo pipeline (Llama + CLIP encoders, dual + single blocks) that runs in well under a second.

    Both tokenizers are the in-memory word tokenizer; CLIP's eos id is 1 (not 2, which would switch CLIP to its
    legacy argmax pooling); the Llama encoder has 2 layers because the pipeline reads hidden_states[-3].
    """
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    tokenizer = word_tokenizer(TINY_WORDS, 64)
    tokenizer_2 = word_tokenizer(TINY_WORDS, 77)
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    torch.manual_seed(seed)  # diffusers/transformers initialise from the global RNG
    text_encoder = LlamaModel(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            bos_token_id=tokenizer.eos_token_id,
            **ids,
        )
    )
    text_encoder_2 = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer_2),
            hidden_size=8,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            projection_dim=8,
            bos_token_id=tokenizer_2.eos_token_id,
            **ids,
        )
    )
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=num_layers,
        num_single_layers=num_single_layers,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=2,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
    )
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
    )
    return HunyuanVideoPipeline(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=shift),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
    )


def save_tiny_hunyuan(out: str | Path, seed: int = 0, **kw) -> Path:
    """Write a tiny random HunyuanVideo pipeline (diffusers directory + accvideo.json) and return its path."""
    import json

    out = save_pipeline(tiny_hunyuan_pipeline(seed, **kw), out)
    (out / "accvideo.json").write_text(json.dumps(TINY_HUNYUAN_TEXT, indent=1) + "\n")
    return out


MAX_LAYERS = 64

# --family of `accvideo tiny-model` -> (what it is, writer(out, seed, layers))
TINY_FAMILIES = {
    "wan": ("Wan 2.1", lambda out, seed, layers: save_tiny_wan(out, seed, num_layers=layers)),
    "wan-i2v": ("Wan 2.1 image-to-video", lambda out, seed, layers: save_tiny_wan_i2v(out, seed, num_layers=layers)),
    "hunyuan": ("HunyuanVideo", lambda out, seed, layers: save_tiny_hunyuan(out, seed, num_single_layers=layers)),
}


@dataclass(frozen=True)
class TinyModelConfig:
    """`accvideo tiny-model DIR`: a tiny random pipeline in diffusers format, for smoke runs and tests."""

    out: str = ""  # folder to write the pipeline to
    seed: int = 0  # seed of the random weights
    layers: int = 2  # transformer blocks (HunyuanVideo: 1 dual + LAYERS single blocks)
    family: str = "wan"  # wan, wan-i2v (image-to-video) or hunyuan

    def __post_init__(self):
        if not self.out:
            raise ValueError("name the folder to write: accvideo tiny-model DIR")
        if self.family not in TINY_FAMILIES:
            raise ValueError(f"--family must be wan or hunyuan, or wan-i2v (image-to-video); got {self.family!r}")
        if not 1 <= self.layers <= MAX_LAYERS:
            raise ValueError(f"--layers must lie in [1, {MAX_LAYERS}] (a tiny model); got {self.layers}")
