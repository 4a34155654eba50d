"""The model seam (docs/ARCHITECTURE.md): one small protocol that hides a model family from generic code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from accvideo.errors import AccVideoError

# Conditioning: named tensors, batch first, so it can be stored, sliced and concatenated without knowing the family
# (Wan: {"prompt_embeds": (B, L, D)}; Wan I2V adds {"image_embeds": (B, T, D'), "condition": (B, 20, F', H', W')};
# Wan 2.2 TI2V's image mode {"condition": (B, 48, 1, H', W')}).
Conditioning = dict[str, torch.Tensor]


def with_defaults(negative: Conditioning, positive: Conditioning) -> Conditioning:
    """The unconditional (CFG) conditioning: the negative's tensors, and the positive's for every name the negative
    lacks (an image-to-video model's image conditioning stays; only the text is swapped, as the stock pipeline does)."""
    return {**positive, **negative}


def select(cond: Conditioning, index: torch.Tensor | slice | Sequence[int]) -> Conditioning:
    """Rows `index` of every tensor of a conditioning."""
    return {k: v[index] for k, v in cond.items()}


def concat(conds: Sequence[Conditioning]) -> Conditioning:
    """Stack conditionings along the batch dimension."""
    return {k: torch.cat([c[k] for c in conds]) for k in conds[0]}


def expand(cond: Conditioning, batch: int) -> Conditioning:
    """A one-row conditioning repeated `batch` times (a view, no copy)."""
    return {k: v.expand(batch, *v.shape[1:]) for k, v in cond.items()}


@runtime_checkable
class ModelAdapter(Protocol):
    """What generic code may ask of a model family. Shapes: x is (B, C, F', H', W') latents."""

    family: str  # "wan", "hunyuanvideo", ...
    image_conditioned: bool  # True: conditioning needs an image too (encode_images), e.g. Wan 2.1 I2V
    num_blocks: int  # transformer blocks, for feature-block choice
    default_shift: float  # the family's (or checkpoint's) sigma shift
    default_guidance: float  # the teacher's CFG scale when none is given (1: the family has no true CFG)
    frame_step: int  # frames must be frame_step*k + 1
    size_multiple: int  # height and width must be multiples of this
    device: torch.device
    dtype: torch.dtype

    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        """Text conditioning for each prompt; the empty prompt gives the unconditional one."""

    def encode_images(self, images: Sequence, frames: int, height: int, width: int) -> Conditioning:
        """Image conditioning for PIL images of exactly (height, width), one per prompt (image_conditioned models
        only); merged with encode_prompts' by `core/images.encode_conditioning`."""

    def keep_given(self, x: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """x (B, C, F', H', W') with the latents its conditioning gives set (Wan 2.2 TI2V's image: frame 0; others
        return x); applied to the starting noise, and the velocity is 0 there, so a solve keeps them."""

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """v = eps - x0 at noise level sigma (B,), one pass (the sampler adds CFG: core/sampling.py)."""

    def features(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning, block: int) -> torch.Tensor:
        """Video-token hidden states (B, tokens, dim) after `block`; later blocks never run."""

    def token_grid(self, latent_shape: Sequence[int]) -> tuple[int, int, int]:
        """(frames, height, width) of the token grid that `features` flattens, for a latent shape."""

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, F', H', W') of one video's latents."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, F', H', W') -> video (B, F, H, W, 3), float in [0, 1]."""

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video (B, F, H, W, 3) float in [0, 1] -> latents (B, C, F', H', W') as the transformer sees them
        (the inverse of decode, up to the VAE's loss; the posterior's mode)."""


# What an adapter returns is checked where generic code takes it: a plugin adapter (docs/own-model.md) with a shape
# wrong by one frame was broadcast into a plausible wrong trajectory and stored; other shapes ended in tracebacks.
OWN_MODEL_FIX = "fix the adapter (docs/own-model.md gives each method's shapes)"


def _name(adapter) -> str:
    """The adapter's class name (the family's, not a runtime wrapper's: models/runtime.RuntimeAdapter)."""
    while hasattr(adapter, "_adapter"):  # bench times a RuntimeAdapter around the family's
        adapter = adapter._adapter
    return type(adapter).__name__


def check_conditioning(adapter, cond: Conditioning, batch: int, method: str = "encode_prompts") -> None:
    """Every tensor of `cond` holds `batch` rows (batch first), or a one-line error naming the adapter's method."""
    for name, value in cond.items():
        if not isinstance(value, torch.Tensor) or value.ndim == 0 or value.shape[0] != batch:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise AccVideoError(
                f"{_name(adapter)}.{method} gave {name!r} of shape {got} for {batch} item(s); every tensor "
                f"must be batch first with {batch} rows: {OWN_MODEL_FIX}"
            )


def check_velocity(adapter, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`v`, when it has the latents' shape; else a one-line error naming the adapter."""
    if not isinstance(v, torch.Tensor) or v.shape != x.shape:
        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise AccVideoError(
            f"{_name(adapter)}.velocity returned shape {got} for latents of shape {tuple(x.shape)}; it must "
            f"return the latents' shape: {OWN_MODEL_FIX}"
        )
    return v


def check_decoded(adapter, video: torch.Tensor, batch: int, frames: int, height: int, width: int) -> torch.Tensor:
    """`video` when it is (batch, frames, height, width, 3), as `decode` promises; else a one-line error."""
    want = (batch, frames, height, width, 3)
    if not isinstance(video, torch.Tensor) or tuple(video.shape) != want:
        got = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise AccVideoError(
            f"{_name(adapter)}.decode returned shape {got}, not {want} (B, F, H, W, 3); {OWN_MODEL_FIX}"
        )
    return video
