"""Training the ToyBench classifier on the world's TRAIN combinations, with augmentations for imperfect clips."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from accvideo.core.config import check_lr_ceiling, check_threads
from accvideo.core.interrupts import check as check_interrupt
from accvideo.core.progress import progress_bar
from accvideo.core.video import check_video_size
from accvideo.errors import AccVideoError
from accvideo.evaluate.classifier import ClassifierConfig, VideoClassifier, classify, save_classifier
from accvideo.world.attributes import Attributes, combinations, parse_caption, prompts
from accvideo.world.render import WorldConfig, render, render_batch


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """One classifier training run; every random choice flows from `seed`."""

    out: str = "classifier"
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    frames: int = 17
    height: int = 64
    width: int = 64
    max_texture: float = 0.10  # background texture amplitude drawn from [0, max] per clip
    max_noise: float = 0.08  # Gaussian pixel-noise std drawn from [0, max] per clip
    blur_prob: float = 0.5  # chance of a random-strength spatial blur per clip
    eval_items: int = 128  # held-out clips scored at the end (written to the JSON config)
    threads: int = 0  # torch CPU threads; 0 keeps torch's default

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.eval_items < 0:
            raise ValueError("steps and batch_size must be >= 1 and eval_items >= 0")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0; got {self.lr}, {self.weight_decay}")
        check_lr_ceiling("lr", self.lr)  # lr=1e30 trained to NaN weights, saved with exit 0
        if min(self.max_texture, self.max_noise) < 0 or not 0 <= self.blur_prob <= 1:
            raise ValueError("max_texture and max_noise must be >= 0 and blur_prob in [0, 1]")
        # the clips it will score are the models' (evaluate samples at its size): frames 4k+1, sides multiples of 16;
        # `--frames 0` was a traceback after the folder was made, `--size 30x30` a crash in evaluate's sampler
        check_video_size(self.frames, self.height, self.width, 4, 16)
        if self.frames < 5:
            raise ValueError(f"frames must be at least 5 (the classifier's motion stream needs 3); got {self.frames}")
        check_threads(self.threads)  # -1 was torch's traceback after the folder was made, 100000 a segfault


def _blur(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Per-clip mix of x (B, F, H, W, 3) with its 3x3 box blur; amount (B,) in [0, 1]."""
    b, f, h, w, c = x.shape
    planes = x.permute(0, 1, 4, 2, 3).reshape(b * f * c, 1, h, w)
    blurred = F.avg_pool2d(F.pad(planes, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    blurred = blurred.reshape(b, f, c, h, w).permute(0, 1, 3, 4, 2)
    a = amount.view(b, 1, 1, 1, 1)
    return x * (1 - a) + blurred * a


def augment(x: torch.Tensor, cfg: ClassifierTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Label-preserving corruptions a generated clip may show: blur, colour gain/offset, flicker, noise."""
    b = x.shape[0]

    def u(*shape):
        return torch.rand(shape, generator=gen)

    blur_on = (u(b) < cfg.blur_prob).float()
    x = _blur(x, blur_on * u(b))
    x = _blur(x, blur_on * (u(b) < 0.3).float() * u(b))  # sometimes a second, stronger pass
    gain = 1 + (u(b, 1, 1, 1, 3) - 0.5) * 0.12  # small: red, orange and yellow stay apart
    offset = (u(b, 1, 1, 1, 1) - 0.5) * 0.08
    flicker = 1 + (u(b, x.shape[1], 1, 1, 1) - 0.5) * 0.06
    x = x * gain * flicker + offset
    x = x + torch.randn(x.shape, generator=gen) * (u(b, 1, 1, 1, 1) * cfg.max_noise)
    return x.clamp(0, 1)


def _batch(cfg: ClassifierTrainConfig, rng: np.random.Generator, train: list[Attributes]):
    """A batch of freshly rendered TRAIN clips (random combos, seeds and texture) and their labels."""
    items = [train[int(i)] for i in rng.integers(len(train), size=cfg.batch_size)]
    clips = [
        render(
            a,
            int(rng.integers(2**31)),
            WorldConfig(
                frames=cfg.frames, height=cfg.height, width=cfg.width, texture=float(rng.uniform(0, cfg.max_texture))
            ),
        )
        for a in items
    ]
    labels = torch.tensor([a.index() for a in items])  # (B, 4): shape, colour, motion, background
    return torch.from_numpy(np.stack(clips)), labels


def heldout_accuracy(model: VideoClassifier, n: int, seed: int = 12345, cfg: WorldConfig | None = None) -> dict:
    """Per-attribute accuracy on n clean HELD-OUT clips (prompt seeds from `seed`)."""
    cfg = cfg or WorldConfig(frames=model.cfg.frames, height=model.cfg.height, width=model.cfg.width)
    items = [(parse_caption(c), s) for c, s in prompts(n, "heldout", seed)]
    preds, _ = classify(model, render_batch(items, cfg))
    truth = np.array([a.index() for a, _ in items]).reshape(-1, 4)
    return {name: float(np.mean(preds[name] == truth[:, k])) for k, name in enumerate(model.cfg.classes)}


def diverged_line(cfg: ClassifierTrainConfig, step: int, what: str) -> str:
    """The one line of a classifier run whose training diverged: nothing saved, and the settings to lower."""
    decay = f" (or weight_decay, now {cfg.weight_decay:g})" if cfg.lr * cfg.weight_decay >= 1 else ""
    return (
        f"classifier training diverged at step {step} ({what}): stopped without saving a classifier to {cfg.out}; "
        f"lower lr (now {cfg.lr:g}){decay} and rerun the same command"
    )


def check_step_finite(cfg: ClassifierTrainConfig, step: int, loss: torch.Tensor, params) -> None:
    """Stop before the optimiser step on a NaN or infinite loss or gradient norm (as `teacher train` does): that
    step made every weight NaN, and the classifier was saved with exit 0; `evaluate` then failed on it."""
    grads = [p.grad for p in params if p.grad is not None]
    loss_v = float(loss.detach())
    norm_v = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
    if not (math.isfinite(loss_v) and math.isfinite(norm_v)):
        raise AccVideoError(diverged_line(cfg, step + 1, f"loss {loss_v:g}, gradient norm {norm_v:g}"))


def train_classifier(cfg: ClassifierTrainConfig, progress: bool = True) -> dict:
    """Train, score on held-out clips, save to cfg.out; returns the facts also stored in its JSON."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng([cfg.seed, 1])
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng():  # module init draws from the global RNG: seed it without leaking
        torch.manual_seed(cfg.seed)
        model = VideoClassifier(ClassifierConfig(frames=cfg.frames, height=cfg.height, width=cfg.width))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    train = combinations("train")
    t0 = time.perf_counter()
    model.train()
    bar = progress_bar(range(cfg.steps), desc="training classifier", unit="step", show=progress)
    for step in bar:
        check_interrupt()
        clips, labels = _batch(cfg, rng, train)
        logits, _ = model(augment(clips, cfg, gen))
        loss = sum(F.cross_entropy(lg, labels[:, k]) for k, lg in enumerate(logits.values()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        check_step_finite(cfg, step, loss, model.parameters())  # before the step that would make every weight NaN
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.perf_counter() - t0
    model.eval()
    if not all(torch.isfinite(p).all() for p in model.parameters()):  # never saved: load_classifier refuses them
        raise AccVideoError(diverged_line(cfg, cfg.steps, "weights NaN or infinite"))
    acc = heldout_accuracy(model, cfg.eval_items) if cfg.eval_items else {}
    info = {
        "train_seconds": round(seconds, 1),
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "seed": cfg.seed,
        "max_texture": cfg.max_texture,
        "max_noise": cfg.max_noise,
        "blur_prob": cfg.blur_prob,
        "heldout_items": cfg.eval_items,
        "heldout_accuracy": acc,
    }
    save_classifier(model, cfg.out, **info)
    return info
