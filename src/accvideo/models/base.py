"""What every diffusers video adapter shares: latent geometry, velocity, features with an early exit.

A family subclasses `TransformerAdapter` and provides `_forward(x, sigma, cond)` (the raw transformer output),
`block(index)` (the module whose output is the feature at depth `index`) and the geometry attributes
`latent_channels`, `temporal_factor`, `spatial_factor`, `patch_size`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from accvideo.core.adapter import Conditioning
from accvideo.core.inputs import check_safetensors, is_int, parse_json, read_small_file
from accvideo.core.video import largest_video
from accvideo.errors import AccVideoError


@dataclass(frozen=True)
class LoadParts:
    """Which components of a pipeline to load: distillation needs neither text (nor image) encoders (SynVid items
    hold the encodings) nor the VAE (unless real videos are encoded); `empty_transformer` builds the transformer on
    the meta device from its config (its buffers real), for the parallel seam to shard and then fill
    (core/parallel.py); `empty_experts` builds a second expert (Wan 2.2 A14B's `transformer_2`) so too, for a
    caller that fills both (a full student's load: models/student.py)."""

    text: bool = True
    vae: bool = True
    empty_transformer: bool = False
    empty_experts: bool = False


WHOLE = LoadParts()


def empty_module(cls, folder: Path, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """A diffusers model built from `folder`'s config.json with its parameters on the meta device (no memory, no
    weights read) and its buffers real (rotary tables: computed, never stored)."""
    from accelerate import init_empty_weights

    # accelerate moves each parameter to the meta device once made, so one made by torch.randn (Wan's
    # scale_shift_table) still draws from the global generator: forked, so checking a folder moves no run's generator
    with torch.random.fork_rng(devices=[]), init_empty_weights(include_buffers=False):
        module = cls.from_config(cls.load_config(str(folder)))
    if dtype is not None:  # as from_pretrained casts: the model's `_keep_in_fp32_modules` stay float32
        keep = getattr(cls, "_keep_in_fp32_modules", None) or []
        for name, p in module.named_parameters():
            p.data = p.data.to(torch.float32 if any(k in name.split(".") for k in keep) else dtype)
    return module


def empty_config(cls, folder: Path):
    """The full config (defaults filled in) of the diffusers model saved in `folder`, without reading its weights."""
    return empty_module(cls, folder).config


def scheduler_shift(config: dict, fallback: float) -> float:
    """The sigma shift a pipeline's scheduler config holds (FlowMatchEuler's `shift`, UniPC's `flow_shift`), else the
    family's `fallback`."""
    value = config.get("shift", config.get("flow_shift", fallback))
    try:
        shift = float(value or 1.0)
    except (TypeError, ValueError):
        shift = math.nan
    if isinstance(value, bool) or not (math.isfinite(shift) and shift > 0):  # nan was sampled, then blamed on CFG
        raise AccVideoError(
            f"the teacher's scheduler/scheduler_config.json gives shift {value!r}, which is no positive number; fix "
            'the file (e.g. "shift": 5.0) or restore the teacher folder'
        )
    return shift


def stored_keys(folder: Path) -> set[str]:
    """The tensor names the safetensors files of a component folder hold (their headers alone; every shard)."""
    fix = "re-save or re-download the pipeline"
    return {k for f in sorted(folder.glob("*.safetensors")) for k in check_safetensors(f, fix) if k != "__metadata__"}


def _patterns(module, name: str) -> list:
    return [re.compile(p) for p in getattr(module, name, None) or []]


def _tied(module) -> set[str]:
    """The parameters a transformers model ties to another (UMT5's encoder.embed_tokens to shared): never stored."""
    tied = getattr(module, "all_tied_weights_keys", None) or getattr(module, "_tied_weights_keys", None) or ()
    return set(tied)


def _plain(module, keys) -> set[str]:
    """`keys` without the transformers model's base prefix (CLIPTextModel's `text_model.`, a Llama's `model.`), which
    a checkpoint carries or not by version and class, and the loader adds or strips."""
    prefix = getattr(module, "base_model_prefix", "") or ""
    return {k.removeprefix(f"{prefix}.") if prefix else k for k in keys}


def weight_mismatch(module, stored: set[str]) -> tuple[list[str], list[str]]:
    """(unused, missing): the stored tensors `module` does not use, and the ones it needs that are not stored
    (tied weights, buffers and the keys the class declares ignorable aside)."""
    state = _plain(module, module.state_dict())
    stored = _plain(module, stored)
    buffers = _plain(module, (n for n, _ in module.named_buffers()))
    skip_unused = _patterns(module, "_keys_to_ignore_on_load_unexpected")
    skip_missing = _patterns(module, "_keys_to_ignore_on_load_missing")
    tied = _plain(module, _tied(module))
    unused = sorted(k for k in stored - state - buffers if not any(p.search(k) for p in skip_unused))
    missing = sorted(k for k in state - stored - tied if not any(p.search(k) for p in skip_missing))
    return unused, missing


def check_weights_used(module, folder: Path) -> None:
    """Refuse a loaded component (a diffusers or transformers model) whose safetensors disagree with the model its
    config.json describes: weights it does not use (`num_layers` 1 over a 2-block file loaded one block and dropped
    the other, silently: the loaders only log it), or weights it needs that are missing (transformers filled them
    with random values, diffusers left them empty). Keys the class itself declares ignorable are allowed."""
    stored = stored_keys(folder) if isinstance(module, torch.nn.Module) else set()
    if not stored:  # no module, or weights in another format: nothing to compare with
        return
    unused, missing = weight_mismatch(module, stored)
    if unused:
        raise AccVideoError(
            f"{folder}/config.json does not match its weights: {len(unused)} stored tensor(s) are not used by the "
            f"model it describes (e.g. {unused[0]}); restore the config.json or re-download the pipeline"
        )
    if missing:
        named = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise AccVideoError(
            f"the weights in {folder} lack {len(missing)} tensor(s) its config.json's model needs ({named}); "
            "re-save or re-download the pipeline"
        )


def check_config_types(module, folder: Path) -> None:
    """Refuse a diffusers config.json value whose kind differs from its constructor default's (`"eps": "a"` where
    the default is 1e-06): the model builds, then fails deep in its first forward with a traceback. Only a string
    for a number (bools count as numbers) or a number for a string is refused: a null, a list where the default is
    one number (some published configs give per-block values), and nested values pass as they are."""
    import inspect

    from diffusers.configuration_utils import ConfigMixin

    if not isinstance(module, ConfigMixin):
        return
    for name, p in inspect.signature(type(module).__init__).parameters.items():
        value, default = module.config.get(name), p.default
        if value is None or default is None or default is inspect.Parameter.empty:
            continue
        number = (bool, int, float)
        if isinstance(default, number) and isinstance(value, str):
            kind = "a number"
        elif isinstance(default, str) and isinstance(value, number):
            kind = "a string"
        else:
            continue
        raise AccVideoError(
            f"{folder}/config.json gives {name} {json.dumps(value)}, where {type(module).__name__} takes {kind} "
            f"(default {json.dumps(default)}); restore the config.json or re-download the pipeline"
        )


def load_pipeline(pipeline_cls, path: Path, dtype: torch.dtype, device, parts: LoadParts, transformer_cls):
    """`pipeline_cls.from_pretrained` of the local folder with only `parts`, frozen, on `device` (an empty
    transformer stays on the meta device until the parallel seam fills it)."""
    skip: dict = {}
    if not parts.text:
        names = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "image_encoder", "image_processor")
        skip.update({n: None for n in names if (path / n).is_dir()})
    if not parts.vae:
        skip["vae"] = None
    if parts.empty_transformer:
        skip["transformer"] = empty_module(transformer_cls, path / "transformer", dtype)
    if parts.empty_experts and (path / "transformer_2").is_dir():
        skip["transformer_2"] = empty_module(transformer_cls, path / "transformer_2", dtype)
    pipe = pipeline_cls.from_pretrained(str(path), dtype=dtype, local_files_only=True, **skip)
    for name, module in pipe.components.items():
        if name not in skip:
            check_config_types(module, path / name)
            check_weights_used(module, path / name)
        if isinstance(module, torch.nn.Module):
            if not any(p.is_meta for p in module.parameters()):  # an empty transformer: filled on `device` later
                module.to(device)
            module.requires_grad_(False).eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _config(folder: Path) -> dict:
    """A component's config.json as a dict; {} when absent, unreadable, or no small regular file (a FIFO waited
    for a writer forever): the input guard and the loader say what is wrong with it."""
    try:
        data = parse_json(read_small_file(folder / "config.json"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# a model config's block counts -> the stored tensor prefixes of its numbered blocks (diffusers' video transformers,
# transformers' text and image encoders)
BLOCK_PREFIXES = {
    "num_layers": ("blocks", "transformer_blocks", "encoder.block"),
    "num_single_layers": ("single_transformer_blocks",),
    "num_refiner_layers": ("context_embedder.token_refiner.refiner_blocks",),
    "num_hidden_layers": (
        "layers",
        "model.layers",
        "encoder.layers",
        "text_model.encoder.layers",
        "vision_model.encoder.layers",
    ),
}
MAX_BLOCKS = 1000  # a count the weights do not confirm (no numbered blocks found): the largest models have ~60
MAX_ROPE_LEN = 1 << 16  # rotary positions per axis (Wan: 1,024): tables past this fill the memory before any frame


def _stored_blocks(stored: set[str], prefixes: tuple[str, ...]) -> int | None:
    """1 + the largest block index stored under `prefixes` (`blocks.N.`), None when none is."""
    pattern = re.compile(rf"^(?:{'|'.join(map(re.escape, prefixes))})\.(\d+)\.")
    found = [int(m[1]) for k in stored if (m := pattern.match(k))]
    return max(found) + 1 if found else None


def check_config_sizes(folder: Path, fix: str = "restore the config.json or re-download the pipeline") -> None:
    """Refuse, before a model is built from `folder`'s config.json, block counts that are no whole number or differ
    from the blocks its weights hold (`num_layers` 1000000000 built blocks for minutes, memory growing) and a rotary
    table past MAX_ROPE_LEN positions (killed for memory); one line naming the key."""
    config = _config(folder)
    stored = stored_keys(folder) if config else set()
    for key, prefixes in BLOCK_PREFIXES.items():
        value = config.get(key)
        if key not in config or value is None:
            continue
        if not (is_int(value) and value >= 0):
            raise AccVideoError(f"{folder}/config.json gives {key} {json.dumps(value)}, not a count of blocks; {fix}")
        held = _stored_blocks(stored, prefixes)
        if held is None and value > MAX_BLOCKS:
            raise AccVideoError(f"{folder}/config.json gives {key} {value}, past any model ({MAX_BLOCKS}); {fix}")
        if held is not None and value != held:
            raise AccVideoError(
                f"{folder}/config.json does not match its weights: it gives {key} {value}, its weights hold {held} "
                f"blocks; {fix}"
            )
    rope = config.get("rope_max_seq_len")
    if rope is not None and not (isinstance(rope, int) and not isinstance(rope, bool) and rope <= MAX_ROPE_LEN):
        raise AccVideoError(
            f"{folder}/config.json gives rope_max_seq_len {json.dumps(rope)}, where a whole number of positions up "
            f"to {MAX_ROPE_LEN} belongs; {fix}"
        )


class _StopForward(Exception):
    """Raised by a forward hook to end a transformer forward right after the feature block."""


class TransformerAdapter:
    """Shared ModelAdapter methods over a diffusers pipeline's transformer."""

    num_blocks: int
    image_conditioned = False  # True: every conditioning also holds an image's (encode_images)
    # the modules a LoRA student wraps when lora_targets names none: diffusers' attention projections (HunyuanVideo's
    # single-stream blocks have no to_out; their output projection is shared with the MLP)
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    loads_as: str | None = None  # the diffusers pipeline class that loads the folder, when not `pipeline_class`
    latent_channels: int
    temporal_factor: int
    spatial_factor: int
    patch_size: tuple[int, int, int]

    @classmethod
    def folder_size_multiple(cls, path: str | Path) -> int:
        """What height and width must be multiples of, read from the folder's configs before any weight is loaded:
        the VAE's spatial factor times the transformer's spatial patch (Wan 2.1 8 x 2 = 16, Wan 2.2 TI2V 16 x 2 =
        32). Configs that do not say give 16; the loaded adapter's `size_multiple` is checked again."""
        vae, transformer = (_config(Path(path) / part) for part in ("vae", "transformer"))
        spatial = vae.get("scale_factor_spatial", vae.get("spatial_compression_ratio", 8))
        patch = transformer.get("patch_size", 2)
        patch = patch[-1] if isinstance(patch, list) and patch else patch
        valid = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (spatial, patch))
        return spatial * patch if valid else 16

    block_count_keys: tuple[str, ...] = ()  # the transformer config's counts that `num_blocks` sums; () unknown

    @classmethod
    def folder_num_blocks(cls, path: str | Path) -> int | None:
        """The blocks `num_blocks` will count, read from the transformer's config.json before any weight is loaded
        (Wan's `num_layers`; HunyuanVideo's plus `num_single_layers`); None when the family or the config does not
        say (an adapter of the user's own: checked once loaded)."""
        cfg = _config(Path(path) / "transformer")
        counts = [cfg.get(k) for k in cls.block_count_keys]
        if not counts or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            return None
        return sum(counts)

    @classmethod
    def folder_transformer(cls, path: str | Path) -> torch.nn.Module | None:
        """The transformer of the pipeline folder `path` built on the meta device from its config.json (seconds,
        no weight read), for checks that need its layers' shapes before loading; None when its class is not one of
        diffusers' models or the config does not build (the loader then says what is wrong)."""
        import diffusers

        folder = Path(path) / "transformer"
        model_cls = getattr(diffusers, str(_config(folder).get("_class_name")), None)
        if not (isinstance(model_cls, type) and issubclass(model_cls, diffusers.ModelMixin)):
            return None
        check_config_sizes(folder)  # a billion blocks built on the meta device still took minutes
        try:
            return empty_module(model_cls, folder)
        except Exception:  # a config the class cannot take: the load refuses it in its own words
            return None

    # --- shapes ---------------------------------------------------------------------------------
    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, F', H', W') of one video: F' = (F-1)/4 + 1, H' = H/8, W' = W/8."""
        return (
            self.latent_channels,
            (frames - 1) // self.temporal_factor + 1,
            height // self.spatial_factor,
            width // self.spatial_factor,
        )

    def token_grid(self, latent_shape: Sequence[int]) -> tuple[int, int, int]:
        """Token grid (F'/p_t, H'/p_h, W'/p_w), frame-major as the patch embedding flattens it."""
        f, h, w = latent_shape[-3:]
        pt, ph, pw = self.patch_size
        return f // pt, h // ph, w // pw

    def check_latent_shape(self, latent_shape: Sequence[int]) -> None:
        """Refuse, before any forward, a token grid the transformer's position table cannot index (Wan: a rotary
        table of `rope_max_seq_len` positions per axis); one line naming the largest size that fits."""
        limit = getattr(self.transformer.config, "rope_max_seq_len", None)
        if limit is None:
            return
        if limit < 1:  # no size fits ("use frames of at most -3")
            raise AccVideoError(
                f"the transformer's config.json gives rope_max_seq_len {limit}, which fits no video; restore the "
                "config.json or re-download the pipeline"
            )
        most = largest_video(limit, self.patch_size, self.temporal_factor, self.spatial_factor)
        for (name, largest), tokens in zip(most.items(), self.token_grid(latent_shape), strict=True):
            if tokens > limit:
                raise AccVideoError(
                    f"{name} too large for this model: {tokens} positions along {name}, but its transformer's "
                    f"rope_max_seq_len is {limit}; use {name} of at most {largest}"
                )

    @property
    def width(self) -> int:
        """The transformer's hidden width (heads x head dim: Wan2.1-1.3B 1,536, 14B 5,120, HunyuanVideo 3,072)."""
        cfg = self.transformer.config
        return int(cfg.num_attention_heads * cfg.attention_head_dim)

    def encode_images(self, images: Sequence, frames: int, height: int, width: int) -> Conditioning:
        """A text-to-video model takes no image: one line (image-to-video adapters override this)."""
        raise AccVideoError(
            f'this {self.family} model is text-to-video and takes no image; drop --image (and the JSONL "image" '
            "fields) or use an image-to-video model (WanImageToVideoPipeline)"
        )

    def keep_given(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """x with the parts its conditioning fixes set (Wan 2.2 TI2V's image: latent frame 0); here nothing is."""
        return x

    # --- transformer ----------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        raise NotImplementedError

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """v = eps - x0 (B, C, F', H', W') in float32, one transformer pass (CFG is the sampler's)."""
        return self._forward(x, sigma, cond).float()

    def check_block(self, index: int) -> int:
        """`index` in [0, num_blocks) (negative counts from the end), or a one-line error."""
        if not -self.num_blocks <= index < self.num_blocks:
            raise AccVideoError(f"feature block {index} out of range for {self.num_blocks} transformer blocks")
        return index % self.num_blocks

    def block(self, index: int) -> torch.nn.Module:
        raise NotImplementedError

    def features(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning, block: int) -> torch.Tensor:
        """Video-token hidden states (B, tokens, dim) leaving block `block`; the forward stops there."""
        return stopped_at(self.block(block), lambda: self._forward(x, sigma, cond))


def stopped_at(block: torch.nn.Module, forward) -> torch.Tensor:
    """The output of `block` (its hidden states) while `forward()` runs; the forward stops right after it."""
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward

    handle = block.register_forward_hook(hook)
    try:
        forward()
    except _StopForward:
        pass
    finally:
        handle.remove()
    return captured[0]


def vae_video(
    video: torch.Tensor, what: str = "the VAE", fix: str = "the weights in the model's vae/ folder"
) -> torch.Tensor:
    """A VAE's raw output (B, 3, F, H, W) in [-1, 1] -> video (B, F, H, W, 3) in [0, 1] on the CPU. NaN or infinite
    values (damaged weights, or float16 overflow) are refused here, before the clamp makes them black or white frames
    that a clip, a SynVid video or a score would keep as a result."""
    if not torch.isfinite(video).all():
        dtype = str(video.dtype).removeprefix("torch.")
        fix = "decode in float32 (--dtype float32)" if video.dtype == torch.float16 else f"check {fix}"
        raise AccVideoError(f"{what} decoded NaN or infinite values from finite latents ({dtype}); {fix}")
    return (video.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 4, 1).cpu()
