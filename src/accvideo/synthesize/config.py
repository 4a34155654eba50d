"""Settings of one `accvideo synthesize` run, and the settings that define a SynVid dataset (docs/method.md 1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch

from accvideo.core.sampling import TEACHER_STEPS, check_guidance
from accvideo.core.schedules import check_key_indices, check_steps, shifted_sigmas, uniform_key_indices
from accvideo.core.video import check_fps, check_video_size
from accvideo.errors import AccVideoError
from accvideo.models.runtime import RuntimeOptions
from accvideo.synthesize.prompts import check_prompt

STORES = ("key", "all")
DEFAULT_KEY_STEPS = 5  # the paper's m


@dataclass(frozen=True)
class SynthConfig:
    """One synthesis run. None means "the default": key steps 5, the teacher's own shift."""

    teacher: str = "builtin"  # diffusers pipeline folder, or 'builtin'
    prompts: str = "prompts.txt"  # .txt (one prompt a line) or .jsonl ({"prompt": ..., "seed": ...})
    out: str = "synvid"
    steps: int = TEACHER_STEPS  # n: the teacher's Euler steps
    key_steps: int | None = None  # m: uniform key steps on the n-step grid (None: 5)
    key_indices: list[int] | None = None  # or explicit grid indices 0 = i_0 < ... < i_m = n
    shift: float | None = None  # sigma shift (None: the teacher's own, from its scheduler config)
    guidance: float | None = None  # the teacher's CFG scale, baked into the targets (None: the family's, Wan 5)
    guidance_2: float | None = None  # Wan 2.2 A14B: the low-noise steps' CFG scale (None: the folder's, else guidance)
    negative_prompt: str | None = None  # None: the model's (accvideo.json, its family's, or none)
    seed: int = 0  # base seed: text-file item i gets world.item_seed(seed, i)
    store: str = "key"  # key: the m+1 key latents; all: the whole n+1 trajectory
    videos: bool = False  # also decode and write one MP4 per item
    frames: int | None = None  # None: the model's default (models/defaults.py: Wan 2.1 81, the built-in 17)
    height: int | None = None  # None: the model's default (Wan 2.1 480, HunyuanVideo 544, the built-in 64)
    width: int | None = None  # None: the model's default (Wan 2.1 832, HunyuanVideo 960, the built-in 64)
    fps: int | None = None  # None: the model's default (Wan 2.1 16, HunyuanVideo 24, the built-in 8)
    shard_size: int = 32  # items per shard file; shard k holds items [k*S, (k+1)*S)
    batch: int = 4  # items per teacher call (inside one shard, in a fixed order)
    device: str = "auto"
    dtype: str = "auto"
    overwrite: bool = False  # replace a dataset made with another teacher or other settings
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)  # offload, vae_tiling, compile

    def __post_init__(self):
        check_video_size(self.frames, self.height, self.width, 1, 1)  # bounds only: the family's form once known
        check_steps(self.steps)
        if self.key_steps is not None and self.key_indices is not None:
            raise ValueError("pass either --key-steps or --key-indices, not both")
        if self.key_steps is not None and self.key_steps < 1:
            raise ValueError(f"key_steps must be a positive integer (e.g. --key-steps 5); got {self.key_steps}")
        check_guidance(self.guidance)
        check_guidance(self.guidance_2, "guidance_2")
        if self.negative_prompt is not None:  # not UTF-8: a traceback writing the shard, after the folder was made
            check_prompt(self.negative_prompt, "--negative-prompt", blank=True)
        if self.shift is not None and self.shift <= 0:
            raise ValueError(f"shift must be positive (e.g. --shift 5); got {self.shift}")
        if self.store not in STORES:
            raise ValueError(f"--store must be one of {', '.join(STORES)}; got {self.store!r}")
        for name in ("shard_size", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}")
        if self.fps is not None:
            check_fps(self.fps)
        try:
            _ = self.indices  # validate the key steps now, not after the teacher has loaded
        except AccVideoError as exc:
            raise ValueError(str(exc)) from None

    @property
    def indices(self) -> tuple[int, ...]:
        """Key-step indices on the n-step grid, m+1 of them from 0 to n."""
        if self.key_indices is not None:
            return tuple(check_key_indices(self.key_indices, self.steps))
        return tuple(uniform_key_indices(self.steps, DEFAULT_KEY_STEPS if self.key_steps is None else self.key_steps))


OPTIONAL = ("guidance_2", "boundary_ratio")  # SynVidSettings fields a single-transformer dataset leaves out


@dataclass(frozen=True)
class SynVidSettings:
    """What makes two SynVid items comparable: stored in every shard, checked on resume and on read."""

    teacher: str  # identity: hash of the teacher's config and weights
    family: str
    steps: int
    shift: float
    key_indices: tuple[int, ...]
    guidance: float
    negative_prompt: str
    frames: int
    height: int
    width: int
    latent_shape: tuple[int, ...]  # (C, F', H', W') of one latent
    store: str
    dtype: str
    shard_size: int
    # two-expert teachers (Wan 2.2 A14B) only: the low-noise steps' CFG scale and the expert boundary
    guidance_2: float | None = None
    boundary_ratio: float | None = None

    @property
    def sigmas(self) -> torch.Tensor:
        """The teacher's sigma grid (n+1,), float64, 1 -> 0."""
        return shifted_sigmas(self.steps, self.shift)

    @property
    def latent_indices(self) -> tuple[int, ...]:
        """Grid indices of the latents each item stores: the key steps, or the whole trajectory."""
        return self.key_indices if self.store == "key" else tuple(range(self.steps + 1))

    def to_dict(self) -> dict:
        """Plain data (lists for tuples), for JSON and YAML; the two-expert fields only when set."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {k: v for k, v in out.items() if not (k in OPTIONAL and v is None)}

    @classmethod
    def from_dict(cls, raw: dict) -> SynVidSettings:
        names = {f.name for f in fields(cls)}
        if not set(names) - set(OPTIONAL) <= set(raw) <= names:
            raise ValueError(f"settings fields {sorted(set(raw) ^ names)} differ from this accvideo version's")
        return cls(**{**raw, "key_indices": tuple(raw["key_indices"]), "latent_shape": tuple(raw["latent_shape"])})

    def difference(self, other: SynVidSettings) -> str | None:
        """'field: ours vs theirs' for the first differing field, or None when equal."""
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                return f"{f.name} {a!r} vs {b!r}"
        return None
