"""Sampling a model on a prompt list for evaluation: the one sampling path in batches, each clip from its own seed.

ToyBench's image-to-video mode: an image-to-video model starts each clip from the world's own first frame of that
prompt and seed (the shape, colour, position and background given; the prompt carries the motion), so the real clip
it is scored against begins with the same frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from accvideo.core.progress import progress_bar
from accvideo.core.sampling import SamplingPlan, encode_negative
from accvideo.errors import AccVideoError
from accvideo.sample.run import generate_clips
from accvideo.world import parse_caption
from accvideo.world.render import WorldConfig, render


def first_frames(pairs: Sequence[tuple[str, int]], frames: int, height: int, width: int) -> list:
    """The world's first frame of each (caption, seed) clip as an RGB PIL image, quantised to 8 bits as a file is."""
    from PIL import Image

    world = WorldConfig(frames=frames, height=height, width=width)
    images = []
    for prompt, seed in pairs:
        try:
            attrs = parse_caption(prompt)
        except ValueError:
            raise AccVideoError(
                f"ToyBench's image-to-video mode renders each clip's first frame from a world caption, and {prompt!r} "
                "is not one; use world prompts"
            ) from None
        images.append(Image.fromarray((render(attrs, seed, world)[0] * 255.0 + 0.5).astype(np.uint8)))
    return images


@torch.no_grad()
def generate_videos(
    adapter,
    pairs: Sequence[tuple[str, int]],
    plan: SamplingPlan,
    *,
    frames: int,
    height: int,
    width: int,
    batch_size: int = 4,
    progress: bool = True,
) -> np.ndarray:
    """Clips (N, F, H, W, 3) uint8 for (prompt, seed) pairs; batching does not change any clip's noise or
    conditioning, only the float rounding of batched matrix products (at most 1 uint8 level measured on CPU float32).

    Clips are quantised to 8 bits as any saved video is, so re-scoring a saved .npy folder is exact. An
    image-to-video model starts each clip from the world's first frame of its pair (`first_frames`).
    """
    images = first_frames(pairs, frames, height, width) if adapter.image_conditioned else None
    uncond = encode_negative(adapter, plan)  # one row, shared by every batch
    out: list[np.ndarray] = []
    bar = progress_bar(total=len(pairs), desc="sampling", unit="clip", show=progress)
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        prompts, seeds = [p for p, _ in chunk], [s for _, s in chunk]
        given = images[i : i + batch_size] if images is not None else None
        clips = generate_clips(
            adapter, prompts, seeds, plan, frames=frames, height=height, width=width, images=given, uncond=uncond
        )
        video = clips.float().clamp(0, 1).numpy()
        out.append((video * 255.0 + 0.5).astype(np.uint8))
        bar.update(len(chunk))
    bar.close()
    return np.concatenate(out) if out else np.zeros((0, frames, height, width, 3), np.uint8)
