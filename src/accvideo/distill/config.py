"""Settings of one `accvideo distill` run (docs/method.md 2-3); presets are functions that return configs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise

from accvideo.core.config import check_lr_ceiling
from accvideo.core.parallel import MODES, PRECISIONS
from accvideo.errors import AccVideoError

GAN_LOSSES = ("non-saturating", "hinge")
CHECKPOINTING = ("auto", "on", "off")
# grad_checkpointing=auto turns activation checkpointing on from this many video tokens x transformer width: Wan2.1-1.3B
# at 480x832x81 is 32,760 x 1,536 = 50.3M (9.6 GiB of activations with it on, reference H200 probe); the built-in
# model's 17x64x64 clips are 80 x 128 and a 1.3B at 480x832x9 is 7.2M, where recomputing costs more than it saves
CHECKPOINT_MIN_ELEMENTS = 1 << 23
HEAD_MODES = ("per-step", "shared")
MAX_REAL_CLIPS = 100_000  # real clips are held in memory as latents
ADV_UPDATES = ("joint", "separate")


def check_real_clips(count: int) -> None:
    """`real_clips` (distill, and ablate's row e): ValueError naming the bounds."""
    if not 1 <= count <= MAX_REAL_CLIPS:
        raise ValueError(
            f"real_clips must be between 1 and {MAX_REAL_CLIPS:,} (they are held in memory as latents); got {count}"
        )


# settings a resumed run may change (learning rates: the fix after a NaN; paths: the teacher identity and the
# dataset reader still check them); any other difference means another run
RESUMABLE_CHANGES = frozenset(
    {
        "iterations",
        "checkpoint_every",
        "log_every",
        "tensorboard",
        "out",
        "teacher",
        "data",
        "device",
        "lr",
        "head_lr",
        "grad_clip",
        "parallel",
        "mixed_precision",
        "probe_every",
        "probe_items",
        "grad_checkpointing",  # memory, not results
        "micro_batch",  # memory: the same global batch, equal up to the order of float sums
    }
)


@dataclass(frozen=True)
class DistillConfig:
    """One distillation run. The method's settings are the paper's (AdamW 5e-6, lambda_adv 0.1, non-saturating GAN,
    no R1, 1200 iterations); batch 1 (the paper's 32: `paper_config()`), weight decay 0.01 and gradient clipping at
    1 are this project's, the paper naming none of them."""

    teacher: str = "builtin"  # the diffusers pipeline folder that made the dataset, or 'builtin'
    data: str = "synvid"  # SynVid folder (`accvideo synthesize --out`)
    out: str = "distill-run"
    key_sigmas: list[float] | None = None  # t'_m = 1 > ... > t'_0 = 0; None: the dataset's own key steps
    iterations: int = 1200  # outer iterations; each runs k = m-1 .. 0
    batch: int = 1  # trajectories per update: the global batch, split evenly over torchrun processes
    micro_batch: int | None = None  # per forward; None: the per-process batch (no accumulation)
    lr: float = 5e-6  # student
    head_lr: float = 5e-6  # discriminator heads
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max grad norm of the student (0: off)
    adv: bool = True  # adversarial training on/off (`adv=off`: L_traj only)
    lambda_adv: float = 0.1
    adv_update: str = "joint"  # joint: one student step on L_traj + lambda_adv * L_G per key step; separate: one each
    adv_warmup: int = 0  # first iterations in which the heads learn but L_G does not reach the student
    gan_loss: str = "non-saturating"  # or hinge
    r1: float = 0.0  # weight of an R1 penalty on the heads' real inputs (0: off, as in the paper)
    head_steps: int = 1  # AdamW steps of H_k per key step, on the same teacher features (computed once)
    heads: str = "per-step"  # one head per key step (the paper's time-aware heads) or one shared head
    head_channels: int = 64
    real_data: str | None = None  # beyond the paper: a folder of MP4 clips, or 'world', as more real samples
    real_weight: float = 0.5  # share of real_data clips among the heads' real samples (with real_data)
    real_clips: int = 512  # real_data=world: how many train-split clips to render
    feature_blocks: list[int] | None = None  # teacher block per key step k = 0..m-1; None: the paper's choice
    lora_rank: int = 0  # 0: full student; r > 0: a LoRA student sharing the teacher's weights
    lora_alpha: float | None = None  # None: alpha = rank (scale 1)
    lora_targets: list[str] | None = None  # module names; None: the family's attention projections
    ema: float = 0.0  # EMA decay of the student's weights (0: off); the export uses the EMA
    grad_checkpointing: str = "auto"  # activation checkpointing: auto (on from tokens x width >= 2^23), on, off
    parallel: str = "auto"  # under torchrun: auto (fsdp on GPU for >= 1B-parameter students, else ddp), ddp, fsdp
    mixed_precision: str = "auto"  # bf16 compute for the student: auto (on GPU only), bf16, off
    seed: int = 0
    checkpoint_every: int = 100  # iterations between saves of the whole training state
    log_every: int = 1  # iterations between progress-bar refreshes and TensorBoard points
    probe_every: int = 10  # iterations between checks of the heads on a fixed probe set (0: never)
    probe_items: int = 32  # trajectories (and starting noises) of that probe set
    tensorboard: bool = False
    device: str = "auto"
    dtype: str = "auto"  # the teacher's weights; a full student trains in float32

    def __post_init__(self):
        # YAML 1.1 reads a bare on / off as a boolean; config.yaml of older runs holds true / false
        spelled = {"true": "on", "false": "off"}.get(str(self.grad_checkpointing).lower(), self.grad_checkpointing)
        object.__setattr__(self, "grad_checkpointing", spelled)
        if self.lora_targets is not None and not self.lora_targets:  # `lora_targets=[]`: the default, recorded so
            object.__setattr__(self, "lora_targets", None)
        if self.grad_checkpointing not in CHECKPOINTING:
            raise ValueError(f"grad_checkpointing must be auto, on or off; got {self.grad_checkpointing!r}")
        for name in (
            "iterations",
            "batch",
            "checkpoint_every",
            "log_every",
            "head_channels",
            "head_steps",
            "probe_items",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}")
        if self.micro_batch is not None and (self.micro_batch < 1 or self.batch % self.micro_batch):
            raise ValueError(f"micro_batch must divide batch ({self.batch}); got {self.micro_batch}")
        for name in ("lr", "head_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive; got {getattr(self, name)}")
            check_lr_ceiling(name, getattr(self, name))
        for name in ("weight_decay", "grad_clip", "lambda_adv", "r1"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.gan_loss not in GAN_LOSSES:
            raise ValueError(f"gan_loss must be one of {', '.join(GAN_LOSSES)}; got {self.gan_loss!r}")
        if not 0 <= self.real_weight <= 1:
            raise ValueError(f"real_weight must lie in [0, 1]; got {self.real_weight}")
        check_real_clips(self.real_clips)
        if self.adv_warmup < 0:
            raise ValueError(f"adv_warmup must be >= 0 iterations (0: L_G from the start); got {self.adv_warmup}")
        if self.probe_every < 0:
            raise ValueError(f"probe_every must be >= 0 (0: no probe); got {self.probe_every}")
        if self.adv_update not in ADV_UPDATES:
            raise ValueError(f"adv_update must be one of {', '.join(ADV_UPDATES)}; got {self.adv_update!r}")
        if self.heads not in HEAD_MODES:
            raise ValueError(f"heads must be one of {', '.join(HEAD_MODES)}; got {self.heads!r}")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0 (0: full student); got {self.lora_rank}")
        if self.lora_alpha is not None and self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha must be positive; got {self.lora_alpha}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must lie in [0, 1) (0: off, e.g. 0.999); got {self.ema}")
        if self.parallel not in MODES:
            raise ValueError(f"parallel must be one of {', '.join(MODES)}; got {self.parallel!r}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {', '.join(PRECISIONS)}; got {self.mixed_precision!r}")
        ks = self.key_sigmas
        if ks is not None and (len(ks) < 2 or ks[0] != 1 or ks[-1] != 0 or any(b >= a for a, b in pairwise(ks))):
            raise ValueError(f"key_sigmas must fall strictly from 1 to 0 (e.g. [1, 0.9, 0.6, 0]); got {ks}")

    def checkpointing(self, tokens: int, width: int) -> bool:
        """Whether activation checkpointing is on for `tokens` video tokens through a transformer `width` wide."""
        if self.grad_checkpointing == "auto":
            return tokens * width >= CHECKPOINT_MIN_ELEMENTS
        return self.grad_checkpointing == "on"

    @property
    def accumulation(self) -> int:
        """Micro-batches per update in one process (derived: batch / micro_batch)."""
        return self.batch // (self.micro_batch or self.batch)

    def split(self, world: int) -> tuple[int, int, int]:
        """(per-process batch, micro-batch, accumulation) on `world` processes; one-line error if they do not divide."""
        if self.batch % world:
            counts = ", ".join(str(n) for n in range(1, min(self.batch, 64) + 1) if self.batch % n == 0)
            raise AccVideoError(
                f"batch={self.batch} is the global batch and must be divisible by the {world} "
                f"processes; use e.g. batch={world * -(-self.batch // world)}, or a process count that divides "
                f"{self.batch} ({counts}; a run resumes only at the batch it started with)"
            )
        local = self.batch // world
        micro = self.micro_batch or local
        if local % micro:
            raise AccVideoError(
                f"micro_batch={micro} must divide the per-process batch {local} (batch={self.batch} "
                f"over {world} processes); use e.g. micro_batch=1"
            )
        return local, micro, local // micro


def paper_config(**kw) -> DistillConfig:
    """The paper's recipe (docs/method.md 3): 1,200 iterations of batch 32, AdamW lr 5e-6, lambda_adv 0.1."""
    return replace(DistillConfig(iterations=1200, batch=32, micro_batch=1), **kw)


def quick_config(**kw) -> DistillConfig:
    """A seconds-long run with every phase, for tests and smoke runs on tiny models."""
    return replace(
        DistillConfig(iterations=4, batch=2, lr=1e-4, head_lr=1e-4, head_channels=8, checkpoint_every=2, device="cpu"),
        **kw,
    )
