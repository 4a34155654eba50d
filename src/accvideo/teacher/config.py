"""Settings of `accvideo teacher train`: world, VAE, text encoder, transformer and training."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from accvideo.core.config import check_lr_ceiling, check_threads, fields_of

# counts and sizes (a zero or negative one failed as a traceback in diffusers or torch, after the VAE had trained)
POSITIVE = (
    "height",
    "width",
    "vae_steps",
    "steps",
    "batch",
    "vae_batch",
    "vae_image_batch",
    "vae_crop_frames",
    "vae_crop_size",
    "vae_z_dim",
    "dataset_size",
    "text_layers",
    "layers",
    "heads",
    "ffn_dim",
    "checkpoint_every",
    "warmup",
)
VAE_LEVELS = 4  # vae_dim_mult: one multiplier a level; three downsamplings make the VAE's 8x spatial, 4x temporal
TEXT_HEADS = 4  # the text encoder's attention heads: each takes text_dim // 4 dimensions
MIN_VAE_BASE_DIM = 2  # the VAE decoder halves base_dim's channels on its way up


@cache
def caption_tokens() -> int:
    """Tokens of the world's longest caption: one a word, plus the end token."""
    from accvideo.world.attributes import caption, combinations

    return max(len(caption(a).split()) for a in combinations("all")) + 1


def check_model_shape(cfg) -> None:
    """The sizes the VAE, the text encoder and the transformer are built with: what each of them can take."""
    if len(cfg.vae_dim_mult) != VAE_LEVELS or min(cfg.vae_dim_mult) < 1:
        raise ValueError(
            f"vae_dim_mult must list {VAE_LEVELS} positive channel multipliers, one a VAE level (e.g. [1, 2, 4, 4]); "
            f"got {list(cfg.vae_dim_mult)}"
        )
    if cfg.vae_base_dim < MIN_VAE_BASE_DIM:
        raise ValueError(f"vae_base_dim must be >= {MIN_VAE_BASE_DIM} (its decoder halves it); got {cfg.vae_base_dim}")
    if cfg.text_dim < TEXT_HEADS:
        raise ValueError(
            f"text_dim must be >= {TEXT_HEADS} (the text encoder's {TEXT_HEADS} heads split it); got {cfg.text_dim}"
        )
    if cfg.head_dim < 2 or cfg.head_dim % 2:
        raise ValueError(
            f"head_dim must be a positive even number (rotary positions take pairs of dimensions); got {cfg.head_dim}"
        )
    need = caption_tokens()
    if cfg.max_length < need:
        raise ValueError(
            f"max_length must be >= {need} (the world's longest caption in tokens, end token included: a shorter one "
            f"cuts captions); got {cfg.max_length}"
        )


def check_rates(cfg) -> None:
    """Learning rates, loss weights and the noise shift."""
    for name in ("lr", "vae_lr", "vae_video_lr"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"{name} must be positive; got {getattr(cfg, name)}")
        check_lr_ceiling(name, getattr(cfg, name))
    for name in ("vae_shape_weight", "vae_chroma_weight", "vae_kl"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name} must be >= 0; got {getattr(cfg, name)}")
    if not cfg.shift > 0:
        raise ValueError(f"shift must be positive (e.g. shift=3); got {cfg.shift}")


@dataclass(frozen=True)
class TeacherConfig:
    """Everything that defines the built-in teacher; the same config and seed give the same weights."""

    seed: int = 0
    frames: int = 17
    height: int = 64
    width: int = 64
    # VAE (AutoencoderKLWan): 8x spatial, 4x temporal. Convolutional and causal in time, so it trains on crops
    # and applies to whole clips: first vae_image_steps steps on single frames (only the first causal chunk runs:
    # ~5x cheaper), then the rest on vae_crop_frames-frame crops, which train the time convolutions and the
    # chunk-to-chunk cache. Crops are centred on the shape. ~11 min single-threaded CPU with these defaults.
    vae_base_dim: int = 8
    vae_z_dim: int = 8
    vae_dim_mult: list[int] = field(default_factory=lambda: [1, 2, 4, 4])
    vae_steps: int = 4000  # all VAE steps, the single-frame ones included
    vae_image_steps: int = 3000
    vae_image_batch: int = 8
    vae_batch: int = 4
    vae_crop_frames: int = 9  # 4k+1; 9 = three causal chunks, so the chunk-to-chunk cache is trained
    vae_crop_size: int = 32
    vae_lr: float = 2e-3  # single-frame phase; both phases: warmup then cosine decay
    vae_video_lr: float = 1e-3
    vae_shape_weight: float = 2.0  # the shape's pixels weigh 1 + this in the MSE, the background 1
    vae_chroma_weight: float = 2.0  # scales the colour part (error minus its channel mean) of the error
    vae_kl: float = 1e-4  # weight of a small L2 pull on the latents
    # text encoder: a random, frozen UMT5 over the world's vocabulary (the transformer learns to read it)
    text_dim: int = 32
    text_layers: int = 2
    max_length: int = 24
    # transformer (WanTransformer3DModel)
    layers: int = 4
    heads: int = 4
    head_dim: int = 32
    ffn_dim: int = 512
    # flow-matching training
    dataset_size: int = 4000  # rendered, encoded once, reused every epoch
    steps: int = 11000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 200
    ema: float = 0.999
    caption_dropout: float = 0.1  # so classifier-free guidance works
    shift: float = 3.0  # training noise-level shift, also written as the scheduler's default
    checkpoint_every: int = 500
    # image-to-video (TI2V style, docs/builtin.md): latent frame 0 is the clip's first frame, clean (timestep 0 on its
    # tokens, no loss there); saved as a WanImageToVideoPipeline with expand_timesteps
    image: bool = False
    # init=: the architecture settings above must match that teacher's (a mismatch is refused, naming them); the
    # field's comment is its --help, so it stays one line
    init: str = ""  # fine-tune this teacher (its VAE, text encoder kept; 'builtin': the shipped one); "": from scratch

    def __post_init__(self):
        for name in POSITIVE:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.frames < 1 or (self.frames - 1) % 4 or (self.vae_crop_frames - 1) % 4:
            raise ValueError(f"frames and vae_crop_frames must be 4k+1; got {self.frames}, {self.vae_crop_frames}")
        if self.height % 16 or self.width % 16 or self.vae_crop_size % 16:
            raise ValueError("height, width and vae_crop_size must be multiples of 16")
        if self.vae_crop_size > min(self.height, self.width) or self.vae_crop_frames > self.frames:
            raise ValueError(
                f"the VAE's training crop ({self.vae_crop_frames} frames of {self.vae_crop_size}x{self.vae_crop_size}) "
                f"must fit inside a clip ({self.frames} frames of {self.height}x{self.width}); lower vae_crop_frames / "
                "vae_crop_size or raise frames / size"
            )
        if not 0 <= self.caption_dropout < 1 or not 0 <= self.ema < 1:
            raise ValueError("caption_dropout and ema must lie in [0, 1)")
        if not 0 <= self.vae_image_steps < self.vae_steps:
            raise ValueError(
                f"vae_image_steps (the single-frame steps, part of vae_steps) must lie in [0, vae_steps); "
                f"got {self.vae_image_steps} with vae_steps={self.vae_steps}"
            )
        check_model_shape(self)
        check_rates(self)


def quick_config(**kw) -> TeacherConfig:
    """A seconds-long preset with the same code path, for tests."""
    base = dict(
        frames=9,
        height=32,
        width=32,
        vae_steps=3,
        vae_image_steps=2,
        vae_batch=2,
        vae_image_batch=2,
        vae_crop_size=16,
        text_dim=16,
        max_length=16,
        layers=2,
        heads=2,
        head_dim=8,
        ffn_dim=32,
        dataset_size=8,
        steps=6,
        batch=4,
        warmup=2,
        checkpoint_every=3,
    )
    return TeacherConfig(**{**base, **kw})


@dataclass(frozen=True)
class TeacherTrainConfig(TeacherConfig):
    """`accvideo teacher train`: the teacher's settings plus where and how this run trains (not part of them)."""

    out: str = "teacher"  # folder for the finished diffusers pipeline
    work: str | None = None  # resumable training state (default: OUT.work)
    threads: int = 0  # CPU threads (0: torch's default)
    device: str = "cpu"  # where the transformer trains: cpu, cuda or auto (the VAE: cpu)

    def __post_init__(self):
        super().__post_init__()
        check_threads(self.threads)

    def teacher(self) -> TeacherConfig:
        """The settings that define the teacher (what its YAML and identity record)."""
        return fields_of(self, TeacherConfig)


def quick_train(**kw) -> TeacherTrainConfig:
    """`accvideo teacher train --preset quick`."""
    return fields_of(quick_config(), TeacherTrainConfig, **kw)
