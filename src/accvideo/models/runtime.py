"""Run-time options of a loaded teacher or student, applied from outside the adapters.

- offload: text encoders and VAE live on the CPU and visit the GPU only for their own call (encode, decode);
  the transformer stays on the GPU. Saves their memory (UMT5-XXL: 11 GB in bf16) for the cost of the copies.
- vae_tiling: on, off, or auto: untiled while memory allows (it was 2.3x faster at 480p on an H200), and on an
  out-of-memory error the decode is retried tiled (and stays tiled).
- compile: `torch.compile` of the transformer's forward for sampling (the first call compiles: minutes at real
  size; about 14% per step on an H200). Not for distillation, whose feature hooks stop the forward early.
- decoder: a tiny decoder (models/decoder.py, `accvideo decoder distill`) decodes instead of the VAE; it is
  checked against the model's VAE (its identity) when the wrapper is made.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from accvideo.errors import AccVideoError

TILING = ("auto", "on", "off")


@dataclass(frozen=True)
class RuntimeOptions:
    """How a loaded model runs (never what it computes): one nested `runtime` setting of every sampling config."""

    offload: bool = False  # text encoders and VAE on the CPU between their calls (GPU memory)
    vae_tiling: str = "auto"  # auto (untiled unless out of memory), on, off
    compile: bool = False  # torch.compile the transformer (GPU; slow first call)
    decoder: str | None = None  # a tiny decoder folder (accvideo decoder distill) instead of the VAE's decode

    def __post_init__(self):
        # YAML 1.1 reads a bare `on` / `off` as a boolean, which arrives here as the string 'True' / 'False'
        spelled = {"true": "on", "false": "off"}.get(str(self.vae_tiling).lower(), self.vae_tiling)
        object.__setattr__(self, "vae_tiling", spelled)
        if self.vae_tiling not in TILING:
            raise ValueError(f"vae_tiling must be auto, on or off; got {self.vae_tiling!r}")


def text_encoders(adapter) -> list[torch.nn.Module]:
    """The pipeline's conditioning encoders (Wan: UMT5; Wan I2V: UMT5 and the CLIP image encoder; HunyuanVideo: Llama
    and CLIP)."""
    pipe = adapter.pipe
    names = ("text_encoder", "text_encoder_2", "image_encoder")
    return [m for m in (getattr(pipe, n, None) for n in names) if m is not None]


@contextmanager
def visiting(modules: list[torch.nn.Module], device: torch.device):
    """Move modules to `device` for the duration of the block, then back to the CPU."""
    for m in modules:
        m.to(device)
    try:
        yield
    finally:
        for m in modules:
            m.to("cpu")


class RuntimeAdapter:
    """A loaded adapter with run-time options around its encode and decode; every other attribute is the adapter's.

    Tiling on/off, offloading and compiling act on the adapter's shared modules when the wrapper is made.
    """

    def __init__(self, adapter, options: RuntimeOptions, model_dir: Path | None = None, allow_random: bool = False):
        self._adapter = adapter
        self.options = options
        self.decoder = None
        if options.decoder is not None:
            from accvideo.models.decoder import open_decoder

            self.decoder = open_decoder(options.decoder, adapter, model_dir, allow_random)
        self._offload = options.offload and adapter.device.type != "cpu"
        if self._offload:
            for m in [*text_encoders(adapter), adapter.vae]:
                m.to("cpu")
        if options.vae_tiling == "on":
            adapter.vae.enable_tiling()
        elif options.vae_tiling == "off":
            adapter.vae.disable_tiling()
        if options.compile:
            try:
                adapter.transformer.compile()
            except RuntimeError as exc:  # pragma: no cover - depends on the platform's compiler
                raise AccVideoError(
                    f"torch.compile failed ({str(exc).splitlines()[0]}); run without --compile"
                ) from None

    def __getattr__(self, name: str):
        if name.startswith("__") or "_adapter" not in self.__dict__:  # copies and pickles see a plain object
            raise AttributeError(name)
        return getattr(self._adapter, name)

    def _visiting(self, modules: list[torch.nn.Module]):
        return visiting(modules, self._adapter.device) if self._offload else nullcontext()

    def encode_prompts(self, prompts):
        with self._visiting(text_encoders(self._adapter)):
            return self._adapter.encode_prompts(prompts)

    def encode_images(self, images, frames, height, width):
        with self._visiting([*text_encoders(self._adapter), self._adapter.vae]):
            return self._adapter.encode_images(images, frames, height, width)

    def encode(self, video):
        with self._visiting([self._adapter.vae]):
            return self._adapter.encode(video)

    def decode(self, latents):
        adapter = self._adapter
        if self.decoder is not None:
            from accvideo.models.decoder import decode_video

            return decode_video(self.decoder, latents)
        with self._visiting([adapter.vae]):
            if self.options.vae_tiling != "auto":
                return adapter.decode(latents)
            try:
                return adapter.decode(latents)
            except torch.OutOfMemoryError:
                if getattr(adapter.vae, "use_tiling", False):
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                adapter.vae.enable_tiling()  # memory does not allow an untiled decode at this size
                return adapter.decode(latents)


def apply_runtime(adapter, options: RuntimeOptions | None, model_dir: Path | None = None, allow_random: bool = False):
    """The adapter with the options applied (a RuntimeAdapter around it), or the adapter itself for None.

    `model_dir` (the pipeline folder) lets a --decoder be checked against the model's VAE; `allow_random` lets
    `--decoder tiny` build a random one (timing)."""
    return adapter if options is None else RuntimeAdapter(adapter, options, model_dir, allow_random)


def release_encoders(*adapters) -> None:
    """Drop the text encoders and the VAE of loaded adapters (and views sharing their pipeline): distillation
    loads them only to encode real clips, and needs neither after that."""
    for adapter in adapters:
        for name in ("text_encoder", "text_encoder_2", "image_encoder", "vae"):
            if getattr(adapter.pipe, name, None) is not None:
                setattr(adapter.pipe, name, None)
        adapter.vae = None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
