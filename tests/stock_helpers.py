"""The reference several model tests compare against: a stock diffusers pipeline's own solve, as latents."""

from __future__ import annotations

import torch


def stock_latents(
    pipe, adapter, prompt: str, x0: torch.Tensor, steps: int, guidance: float, size, output: str = "latent", **extra
):
    """`pipe(...)` from the noise `x0` with CFG against the empty negative prompt, `size` = (frames, height, width),
    returning the final latents (`output="np"`: the decoded frames; `extra`: the pipeline's other arguments, e.g.
    image= or guidance_scale_2=)."""
    frames, height, width = size
    return pipe(
        prompt=prompt,
        negative_prompt="",
        height=height,
        width=width,
        num_frames=frames,
        num_inference_steps=steps,
        guidance_scale=guidance,
        latents=x0.clone(),
        output_type=output,
        max_sequence_length=adapter.max_sequence_length,
        **extra,
    ).frames
