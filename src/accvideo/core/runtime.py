"""Device, dtype, seeds and model paths: the few environment decisions every stage shares."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch

from accvideo.core.config import check_device_name
from accvideo.errors import AccVideoError

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; refuses cuda on a machine without one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device_name(name)
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AccVideoError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise AccVideoError(
            f"--device {name} names GPU {dev.index} but {count} GPU(s) are visible; use --device cuda:0 to "
            f"cuda:{count - 1} (or check CUDA_VISIBLE_DEVICES)"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():  # was blamed on the model folder
        raise AccVideoError("--device mps was asked for but this machine has no MPS (Apple GPU); use --device cpu")
    return dev


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' -> bfloat16 on cuda, float32 elsewhere."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise AccVideoError(f"unknown dtype {name!r}; use one of auto, {', '.join(sorted(DTYPES))}")
    return DTYPES[name]


# the teachers shipped inside the package (docs/builtin.md), by the name --model takes: the text-to-video built-in and
# its image-to-video fine-tune (TI2V style: a WanImageToVideoPipeline with expand_timesteps)
BUILTIN_MODELS = ("builtin", "builtin-i2v")


def available_memory() -> int | None:
    """Bytes of memory a process can still take before the kernel's out-of-memory killer ends it: Linux's
    MemAvailable plus the free swap (slow, but no kill); None where /proc/meminfo does not say."""
    try:
        info = {
            line.split(":")[0]: int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
        }
    except (OSError, ValueError, IndexError):
        return None
    if "MemAvailable" not in info:
        return None
    return info["MemAvailable"] + info.get("SwapFree", 0)


def builtin_model_dir(name: str = "builtin") -> Path:
    """A teacher shipped inside the package (a diffusers pipeline directory): 'builtin' or 'builtin-i2v'."""
    return Path(str(resources.files("accvideo") / "assets" / name))


def resolve_model(name: str) -> Path:
    """'builtin' / 'builtin-i2v' -> the packaged model; anything else is a local path."""
    if name in BUILTIN_MODELS:
        path = builtin_model_dir(name)
        if not (path / "model_index.json").is_file():
            raise AccVideoError(
                "the built-in model is not part of this install yet; pass --model DIR "
                "(for a quick try: accvideo tiny-model DIR)"
            )
        return path
    return Path(name).expanduser()


def noise(shape, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Starting noise of one item from its own seed (CPU generator, so it is the same on every device)."""
    gen = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float32).to(device)


def batch_noise(seeds: Sequence[int], latent_shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """eps (B, C, F', H', W'), row b drawn from seeds[b] alone on the CPU: batching and device never change it."""
    return torch.stack([noise(latent_shape, s) for s in seeds]).to(device)
