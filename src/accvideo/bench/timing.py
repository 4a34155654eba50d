"""Where generation time goes: the adapter's calls timed from the outside while the real sampling path runs.

`TimedAdapter` wraps a ModelAdapter; every call to encode_prompts, encode_images, velocity and decode is timed (with a
device synchronise on each side, so GPU work is charged to the call that queued it). Velocity calls are grouped into
transformer steps by count, in order (calls // steps a step: 2 with CFG, 1 without). What the end-to-end time does
not spend in those calls (noise, CFG combination, Euler updates, conversions, Python) is the overhead.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch

from accvideo.core.sampling import SamplingPlan
from accvideo.sample.run import generate_clip


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedAdapter:
    """Forwards everything to `adapter`; records seconds per text encoding, transformer call and decode."""

    def __init__(self, adapter):
        self._adapter = adapter
        self.reset()

    def reset(self) -> None:
        self.text: list[float] = []
        self.calls: list[float] = []  # transformer forwards, in order
        self.decode_s: list[float] = []

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    @contextmanager
    def _timed(self, sink: list[float]):
        synchronize(self._adapter.device)
        t0 = time.perf_counter()
        yield
        synchronize(self._adapter.device)
        sink.append(time.perf_counter() - t0)

    def encode_prompts(self, prompts):
        with self._timed(self.text):
            return self._adapter.encode_prompts(prompts)

    def encode_images(self, *args, **kw):  # the CLIP image encoder and the VAE encode of the first frame
        with self._timed(self.text):
            return self._adapter.encode_images(*args, **kw)

    def velocity(self, *args, **kw):
        with self._timed(self.calls):
            return self._adapter.velocity(*args, **kw)

    def decode(self, latents):
        with self._timed(self.decode_s):
            return self._adapter.decode(latents)


def time_generation(
    adapter, plan: SamplingPlan, *, prompt: str, frames: int, height: int, width: int, seed: int
) -> dict:
    """Run `generate_clip` once through a TimedAdapter; seconds per stage, per step, end to end, and the rest."""
    timed = TimedAdapter(adapter)
    synchronize(adapter.device)
    t0 = time.perf_counter()
    generate_clip(timed, prompt, plan, frames=frames, height=height, width=width, seed=seed)
    synchronize(adapter.device)
    total = time.perf_counter() - t0
    steps = plan.steps
    per_step = len(timed.calls) // steps  # 2 with CFG, 1 without
    step_s = [sum(timed.calls[i * per_step : (i + 1) * per_step]) for i in range(steps)]
    accounted = sum(timed.text) + sum(step_s) + sum(timed.decode_s)
    return {
        "steps": steps,
        "guidance": plan.guidance,
        "forwards_per_step": per_step,
        "text_encoding_s": sum(timed.text),
        "transformer_steps_s": step_s,
        "transformer_total_s": sum(step_s),
        "transformer_mean_step_s": sum(step_s) / steps,
        "vae_decode_s": sum(timed.decode_s),
        "end_to_end_s": total,
        "overhead_s": total - accounted,
        "overhead_fraction": (total - accounted) / total,
    }
