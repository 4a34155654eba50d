"""Settings of `accvideo demo` and `accvideo ablate`: the whole chain on the built-in model at reduced size."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from accvideo.core.config import check_lr_ceiling
from accvideo.core.sampling import TEACHER_STEPS, check_guidance
from accvideo.core.video import check_fps
from accvideo.distill.config import check_real_clips


def check_training_numbers(cfg) -> None:
    """What the chain's SynVid and distill configs would refuse only once they are built: after the SynVid was
    synthesized (a traceback, with the folder left behind)."""
    check_guidance(cfg.guidance)
    if cfg.lr <= 0 or cfg.head_lr <= 0:
        raise ValueError(f"lr and head_lr must be positive; got {cfg.lr}, {cfg.head_lr}")
    check_lr_ceiling("lr", cfg.lr)
    check_lr_ceiling("head_lr", cfg.head_lr)
    if cfg.lora_rank < 0:
        raise ValueError(f"lora_rank must be >= 0 (0: full student); got {cfg.lora_rank}")


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
    head_lr: float = 1e-3  # 1e-4 leaves the heads at chance (docs/distill.md, "the adversarial stage")
    lora_rank: int = 0
    # evaluation (ToyBench on held-out prompts) and the report's grid
    eval_prompts: int = 64
    grid_prompts: int = 4
    eval_batch: int = 32
    fps: int = 8
    threads: int = 0  # CPU threads (0: torch's default)
    device: str = "auto"
    decoder: str | None = None  # a tiny decoder (accvideo decoder distill --out DEC): adds the row student + decoder

    def __post_init__(self):
        for name in (
            "train_prompts",
            "teacher_steps",
            "key_steps",
            "iterations",
            "batch",
            "eval_batch",
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
        check_training_numbers(self)
        check_fps(self.fps)  # before the chain, not at the grid, after it
        check_threads(self.threads)


# the settings behind a demo folder's SynVid and its one student (OUT/distill): a rerun that changes one is refused
# (docs/demo.md); the others only change the evaluation or the report (decoder adds a row), or not the numbers
# (synth_batch: batching never changes an item; threads, device: where it runs)
DEMO_TRAINING = (
    "seed",
    "train_prompts",
    "teacher_steps",
    "key_steps",
    "guidance",
    "iterations",
    "batch",
    "lr",
    "head_lr",
    "lora_rank",
)


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


ROWS = ("a", "b", "c", "d", "e")


@dataclass(frozen=True)
class AblationConfig:
    """`accvideo ablate`: the paper's Table 3 on ToyBench for several m and training seeds, with 95% intervals.

    Rows: (a) the teacher with m steps, (b) + L_traj, (c) + L_adv with one shared head (at `shared_head_steps`),
    (d) the full method, (e) the full method with real videos (when `real_data` is set). One SynVid holds the
    key latents of every m; each trained row is distilled once per seed in `seeds`; every sampler is scored on
    the same `eval_prompts` held-out pairs of `split` (tune on val, report on test).
    """

    teacher: str = "builtin"  # the teacher pipeline folder, or 'builtin'
    out: str = "ablation"
    key_steps: list[int] = field(default_factory=lambda: [1, 2, 3, 5])  # the m of every row
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # training seeds of each trained row
    rows: list[str] = field(default_factory=lambda: ["a", "b", "c", "d", "e"])  # e only runs with real_data
    shared_head_steps: list[int] = field(default_factory=lambda: [2])  # the m at which row (c) runs
    real_data_steps: list[int] | None = None  # the m at which row (e) runs (None: every m)
    split: str = "test"  # held-out pairs scored: test (report) or val (tune)
    seed: int = 0  # prompt lists and the SynVid (training seeds are `seeds`)
    # synthesis (SynVid)
    train_prompts: int = 384
    teacher_steps: int = TEACHER_STEPS
    guidance: float = 5.0
    synth_batch: int = 32
    # distillation (accvideo distill settings)
    iterations: int = 200
    batch: int = 8
    lr: float = 1e-4
    head_lr: float = 1e-3
    lora_rank: int = 0
    lambda_adv: float = 0.1  # rows c-e; other than 0.1, their runs are named ...-lam<value>-s<seed>
    adv_warmup: int = 0  # rows c-e; other than 0, their runs are named ...-warm<value>-s<seed>
    real_data: str | None = None  # row (e): a folder of MP4 clips, or 'world' (the built-in world's renderer)
    real_weight: float = 0.5  # row (e): share of real videos among the heads' real samples
    real_clips: int = 256  # row (e) with real_data=world: clips rendered
    # evaluation
    eval_prompts: int = 256
    eval_batch: int = 32
    draws: int = 1000  # bootstrap draws of the intervals
    seed_intervals: bool = True  # paired differences also get intervals over training seeds and clips too
    threads: int = 0  # CPU threads (0: torch's default)
    device: str = "auto"

    def __post_init__(self):
        for name in ("train_prompts", "teacher_steps", "iterations", "batch", "eval_batch", "synth_batch", "draws"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}")
        if self.eval_prompts < 2:
            raise ValueError(
                f"eval_prompts must be >= 2 (the Frechet distance needs two clips); got {self.eval_prompts}"
            )
        if not self.key_steps or any(not 1 <= m <= self.teacher_steps for m in self.key_steps):
            raise ValueError(f"key_steps must list m in [1, teacher_steps={self.teacher_steps}]; got {self.key_steps}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must list distinct training seeds, e.g. [0, 1, 2]; got {self.seeds}")
        unknown = [r for r in self.rows if r not in ROWS]
        if unknown or not self.rows:
            raise ValueError(f"rows must be among {', '.join(ROWS)}; got {self.rows}")
        if self.split not in ("test", "val"):
            raise ValueError(f"split must be test (report) or val (tune); got {self.split!r}")
        if not 0 <= self.real_weight <= 1:
            raise ValueError(f"real_weight must lie in [0, 1]; got {self.real_weight}")
        if self.lambda_adv < 0 or self.adv_warmup < 0:
            raise ValueError(f"lambda_adv and adv_warmup must be >= 0; got {self.lambda_adv}, {self.adv_warmup}")
        if self.real_data is None and not set(self.rows) - {"e"}:  # e alone, which needs real_data: only the teacher
            raise ValueError("row e trains with real videos: give real_data=world (or a folder of clips), or more rows")
        check_training_numbers(self)
        check_real_clips(self.real_clips)  # -1 was distill's traceback, after the SynVid was synthesized
        check_row_steps(self)
        check_threads(self.threads)


ROW_STEPS = {"c": "shared_head_steps", "e": "real_data_steps"}  # rows run at only some m: the setting that lists them


def check_row_steps(cfg: AblationConfig) -> None:
    """Rows (c) and (e) run at the m their setting lists, each m >= 1; a list that is empty, or one that leaves no
    asked-for row at any m of key_steps, is refused (rows=[c] shared_head_steps=[7] reported the teacher alone,
    exit 0). A row that runs at no m here while others do is said by `dropped_rows_line` (the m = 1, 2, 3 grid of
    docs/demo.md keeps (e) for m = 5 this way)."""
    for row, name in ROW_STEPS.items():
        steps = getattr(cfg, name)
        if row in cfg.rows and steps is not None and (not steps or any(m < 1 for m in steps)):
            raise ValueError(f"{name} must list the m (>= 1) at which row {row} runs; got {list(steps)}")
    asked = set(cfg.rows) - (set() if cfg.real_data else {"e"})  # (e) without real_data never runs (refused alone)
    if asked and not asked - set(dropped_rows(cfg)):
        name = " and ".join(ROW_STEPS[r] for r in dropped_rows(cfg))
        raise ValueError(
            f"no row of rows={list(cfg.rows)} runs at any m of key_steps={list(cfg.key_steps)} ({name}); give m "
            f"from key_steps, add the m to key_steps, or ask for other rows"
        )


def dropped_rows(cfg: AblationConfig) -> list[str]:
    """Asked-for rows (c), (e) whose setting lists no m of key_steps: the table will not have them."""
    return [
        row
        for row, name in ROW_STEPS.items()
        if row in cfg.rows
        and getattr(cfg, name) is not None
        and not set(getattr(cfg, name)) & set(cfg.key_steps)
        and (row != "e" or cfg.real_data)
    ]


def dropped_rows_line(cfg: AblationConfig) -> str | None:
    rows = dropped_rows(cfg)
    if not rows:
        return None
    said = ", ".join(f"row {r} ({ROW_STEPS[r]}={list(getattr(cfg, ROW_STEPS[r]))})" for r in rows)
    return f"note: {said} runs at no m of key_steps={list(cfg.key_steps)}: the table has no such row"


# the settings behind an ablation folder's SynVid and students that no run name carries: a rerun that changes one
# is refused (docs/demo.md). iterations, lambda_adv, adv_warmup and real_weight name new runs when they change;
# key_steps, seeds, rows, shared_head_steps and real_data_steps add cells; the rest is evaluation or where it runs.
# real_data and real_clips are compared only when both the folder and the rerun set real_data (adding row (e)).
ABLATE_TRAINING = (
    "seed",
    "train_prompts",
    "teacher_steps",
    "guidance",
    "batch",
    "lr",
    "head_lr",
    "lora_rank",
    "real_data",
    "real_clips",
)
ABLATE_WHEN = {"real_data": "real_data", "real_clips": "real_data"}


def check_threads(threads: int) -> None:
    """CPU threads: 0 (torch's default) up to this machine's cores."""
    cores = os.cpu_count() or 1
    if not 0 <= threads <= cores:
        raise ValueError(
            f"threads must lie in [0, {cores}] (0: torch's default, {cores}: this machine's cores); got {threads}"
        )


def ablation_config(**kw) -> AblationConfig:
    """`accvideo ablate`'s default: the evidence grid (m = 1, 2, 3, 5; 3 training seeds; 256 test pairs)."""
    return AblationConfig(**kw)


def quick_ablation_config(**kw) -> AblationConfig:
    """`accvideo ablate --preset quick`: seconds-long (tests): two m, two seeds, a few prompts, two iterations."""
    base = dict(
        key_steps=[1, 2],
        seeds=[0, 1],
        train_prompts=4,
        teacher_steps=4,
        iterations=2,
        batch=2,
        eval_prompts=3,
        synth_batch=4,
        eval_batch=4,
        draws=50,
        device="cpu",
    )
    return AblationConfig(**{**base, **kw})
