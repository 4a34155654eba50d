"""Settings of `accvideo demo` and `accvideo ablate`: the whole chain on the built-in model at reduced size."""

from __future__ import annotations

from dataclasses import dataclass, replace

from accvideo.core.sampling import TEACHER_STEPS


@dataclass(frozen=True)
class ChainConfig:
    """prompts -> synthesize -> distill -> sample -> evaluate -> report, on one teacher.

    The defaults are sized so `accvideo demo` finishes in under 10 minutes on a 2-core CPU (docs/demo.md has
    the measured stage times); every stage keeps its output, so a rerun resumes where the last one stopped.
    """

    teacher: str = "builtin"  # the teacher pipeline folder, or 'builtin'
    out: str = "demo"
    seed: int = 0  # prompt lists, per-item seeds, the distillation run
    # synthesis (SynVid)
    train_prompts: int = 384  # trajectories the teacher makes (train split of the world)
    teacher_steps: int = TEACHER_STEPS  # n
    key_steps: int = 5  # m: the student's steps
    guidance: float = 5.0  # the teacher's CFG scale
    synth_batch: int = 32
    # distillation (accvideo distill settings)
    iterations: int = 200
    batch: int = 8
    lr: float = 1e-4
    head_lr: float = 1e-4
    lora_rank: int = 0
    # evaluation (ToyBench on held-out prompts) and the report's grid
    eval_prompts: int = 64
    grid_prompts: int = 4
    eval_batch: int = 32
    fps: int = 8
    threads: int = 0  # CPU threads (0: torch's default)
    device: str = "auto"

    def __post_init__(self):
        for name in (
            "train_prompts",
            "teacher_steps",
            "key_steps",
            "iterations",
            "batch",
            "eval_batch",
            "fps",
            "synth_batch",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}")
        if self.eval_prompts < 2:
            raise ValueError(
                f"eval_prompts must be >= 2 (the Frechet distance needs two clips); got {self.eval_prompts}"
            )
        if not 1 <= self.grid_prompts <= self.eval_prompts:
            raise ValueError(f"grid_prompts must lie in [1, eval_prompts={self.eval_prompts}]; got {self.grid_prompts}")
        if self.teacher_steps % self.key_steps:
            raise ValueError(
                f"key_steps ({self.key_steps}) must divide teacher_steps ({self.teacher_steps}), e.g. 5 of 50"
            )
        if self.guidance < 0:
            raise ValueError(f"guidance must be >= 0 (1 turns CFG off); got {self.guidance}")


def quick_config(**kw) -> ChainConfig:
    """A seconds-long chain (for tests): a few prompts, few steps, two iterations."""
    base = dict(
        train_prompts=4,
        teacher_steps=4,
        key_steps=2,
        iterations=2,
        batch=2,
        eval_prompts=3,
        grid_prompts=2,
        synth_batch=4,
        eval_batch=4,
        device="cpu",
    )
    return replace(ChainConfig(), **{**base, **kw})


def ablation_config(**kw) -> ChainConfig:
    """`accvideo ablate`'s default: the demo's sizes, its own run folder."""
    return replace(ChainConfig(), **{"out": "ablation", **kw})


def quick_ablation_config(**kw) -> ChainConfig:
    """`accvideo ablate --preset quick`: the quick chain, its own run folder."""
    return quick_config(**{"out": "ablation", **kw})
