"""The 1D experiment's sizes and settings (paper Figure 2): one frozen config, two presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from accvideo.core.config import check_lr_ceiling, check_threads, fields_of
from accvideo.errors import AccVideoError

KD_TARGETS = ("data", "teacher")
# The largest data_point a (the figures below were measured by hand, not by a committed command). The noise is
# N(0, 1) and near, tau and the mismatches are absolute, all sized (as the
# teacher's net and lr were tuned) for the paper's a = 3. At a = 20 the full preset's teacher still put 100% of its
# samples within near of +-a (AccVideo's student 65.5%, KD M=0's 1.4%); at 30 only 50% (the quick preset: 100% at
# 10, 48% at 15, 0% at 30), so past 20 the teacher misses its own data and no figure means what docs/toy1d.md says.
# Far past it the loss (~a^2) overflows float32: a = 1e20 trained to NaN, wrote a NaN toy1d.json and crashed in
# matplotlib; a = 1e6 ran for minutes.
MAX_DATA_POINT = 20.0
LEARNING_RATES = ("teacher_lr", "student_lr", "dmd_lr", "dmd_fake_lr")


@dataclass(frozen=True)
class Toy1dConfig:
    """Everything `run_toy1d` needs besides the seed; validated at construction."""

    # The teacher's data {-a, +a} and its network (Figure 2a).
    data_point: float = 3.0
    channels: int = 32
    pe_dim: int = 8
    teacher_iters: int = 3000
    teacher_batch: int = 1024
    teacher_lr: float = 2e-3
    # The teacher's ODE grid (uniform, shift 1) and the student's key steps taken from it.
    teacher_steps: int = 50
    student_steps: int = 5
    # Student fine-tuning (KD and AccVideo alike), starting from the teacher's weights.
    student_iters: int = 1000
    student_batch: int = 512
    student_lr: float = 1e-3
    num_trajectories: int = 4096
    # Knowledge distillation on mismatched data (Figure 2b, f).
    kd_mismatches: tuple[float, ...] = (0.0, 1.5, 3.0)
    kd_target: str = "data"
    kd_teacher_label_mismatches: tuple[float, ...] = (3.0,)
    pairs_mismatch: float = 1.5
    # Useless data points (Figure 2e).
    useless_mismatches: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
    useless_points: int = 12000
    tau: float = 0.5
    # Distribution matching (Figure 2c, d).
    dmd_iters: int = 600
    dmd_fake_steps: int = 2
    dmd_batch: int = 512
    dmd_lr: float = 5e-4
    dmd_fake_lr: float = 1e-3
    # Evaluation: how many samples per student, and what "lands on +-a" means.
    eval_samples: int = 8000
    near: float = 0.2

    def __post_init__(self) -> None:
        positive_ints = (
            "channels",
            "pe_dim",
            "teacher_iters",
            "teacher_batch",
            "teacher_steps",
            "student_steps",
            "student_iters",
            "student_batch",
            "num_trajectories",
            "useless_points",
            "dmd_iters",
            "dmd_fake_steps",
            "dmd_batch",
            "eval_samples",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise AccVideoError(f"toy1d {name} must be a positive integer, got {value!r}")
        for name in ("data_point", *LEARNING_RATES, "tau", "near"):
            if not getattr(self, name) > 0:
                raise AccVideoError(f"toy1d {name} must be positive, got {getattr(self, name)!r}")
        if self.data_point > MAX_DATA_POINT:
            raise AccVideoError(
                f"toy1d data_point must be at most {MAX_DATA_POINT:g} (the noise, near, tau and the mismatches are "
                f"sized for the paper's 3; far past it the teacher misses its own data), "
                f"got {self.data_point!r}"
            )
        for name in LEARNING_RATES:  # Adam, like every trainer's: a larger lr only diverges
            try:
                check_lr_ceiling(name, getattr(self, name))
            except ValueError as exc:
                raise AccVideoError(f"toy1d {exc}") from None
        if self.pe_dim % 2:
            raise AccVideoError(f"toy1d pe_dim must be even (sin and cos pairs), got {self.pe_dim}")
        if self.teacher_steps % self.student_steps:
            raise AccVideoError(
                f"toy1d student_steps={self.student_steps} must divide teacher_steps={self.teacher_steps}"
            )
        if self.kd_target not in KD_TARGETS:
            raise AccVideoError(f"toy1d kd_target must be one of {', '.join(KD_TARGETS)}, got {self.kd_target!r}")
        for name in ("kd_mismatches", "kd_teacher_label_mismatches", "useless_mismatches"):
            values = getattr(self, name)
            if any(m < 0 for m in values):
                raise AccVideoError(f"toy1d {name} must be non-negative, got {values}")
        if not self.kd_mismatches or not self.useless_mismatches:
            raise AccVideoError("toy1d kd_mismatches and useless_mismatches need at least one value each")
        if self.pairs_mismatch < 0:
            raise AccVideoError(f"toy1d pairs_mismatch must be non-negative, got {self.pairs_mismatch}")


def full_preset() -> Toy1dConfig:
    """The command's sizes (about 2-3 minutes on 2 CPU cores; see docs/toy1d.md)."""
    return Toy1dConfig()


def quick_preset() -> Toy1dConfig:
    """Reduced sizes for tests and smoke runs (about 25 seconds); same claims, noisier numbers."""
    return dataclasses.replace(
        Toy1dConfig(),
        teacher_iters=1000,
        teacher_batch=256,
        teacher_lr=3e-3,
        student_iters=300,
        student_batch=256,
        num_trajectories=1024,
        kd_teacher_label_mismatches=(),
        useless_points=2000,
        dmd_iters=150,
        dmd_batch=256,
        eval_samples=2000,
    )


PRESETS = {"full": full_preset, "quick": quick_preset}


def preset(name: str) -> Toy1dConfig:
    """A preset by name ('full' or 'quick')."""
    if name not in PRESETS:
        raise AccVideoError(f"unknown toy1d preset {name!r}; use one of {', '.join(PRESETS)}")
    return PRESETS[name]()


@dataclass(frozen=True)
class Toy1dRunConfig(Toy1dConfig):
    """`accvideo toy1d`: the experiment's settings plus its seed, output folder and threads."""

    seed: int = 0  # seed of every phase (same seed, same numbers)
    out: str = "toy1d"  # folder for toy1d.json and the panel PNGs
    threads: int = 1  # CPU threads (0: torch's default; 1 suits tiny nets)

    def __post_init__(self):
        super().__post_init__()
        check_threads(self.threads)

    def experiment(self) -> Toy1dConfig:
        return fields_of(self, Toy1dConfig)


def full_run() -> Toy1dRunConfig:
    """`accvideo toy1d` (the documented run)."""
    return fields_of(full_preset(), Toy1dRunConfig)


def quick_run() -> Toy1dRunConfig:
    """`accvideo toy1d --preset quick` (for tests)."""
    return fields_of(quick_preset(), Toy1dRunConfig)
