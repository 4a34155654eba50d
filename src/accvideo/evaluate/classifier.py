"""The ToyBench video classifier: a small 3D-conv net with one head per world attribute; its features feed FVD."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from accvideo.core.inputs import first_non_finite
from accvideo.errors import AccVideoError
from accvideo.world.attributes import ATTRIBUTES

WEIGHTS_NAME = "classifier.safetensors"
CONFIG_NAME = "classifier.json"


def _default_classes() -> dict[str, list[str]]:
    return {k: list(v) for k, v in ATTRIBUTES.items()}


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture and the clip format the classifier expects (stored as its JSON config)."""

    frames: int = 17
    height: int = 64
    width: int = 64
    appearance_widths: tuple[int, ...] = (16, 32, 48, 64)  # 2D stream on a few frames: shape, colour, background
    appearance_frames: int = 3  # frames the 2D stream sees, evenly spaced from first to last
    motion_widths: tuple[int, ...] = (8, 16, 32, 64)  # 3D stream on every frame: motion
    feature_dim: int = 64
    classes: dict[str, list[str]] = field(default_factory=_default_classes)

    def __post_init__(self):
        if self.frames < 3 or self.height < 16 or self.width < 16:
            got = f"{self.frames}x{self.height}x{self.width}"
            raise ValueError(f"the classifier needs >= 3 frames of >= 16x16; got {got}")
        widths = (*self.appearance_widths, *self.motion_widths)
        if not self.appearance_widths or not self.motion_widths or min(widths) < 4 or self.feature_dim < 2:
            raise ValueError(f"stream widths and feature_dim {self.feature_dim} must be >= 4 and non-empty")
        if not 1 <= self.appearance_frames <= self.frames:
            raise ValueError(f"appearance_frames must be in [1, frames]; got {self.appearance_frames}")
        if any(len(v) < 2 for v in self.classes.values()):
            raise ValueError("every classifier head needs at least two classes")


def _block3d(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Sequential:
    """Conv3d + GroupNorm (per-clip statistics, so a batch of odd clips cannot skew it) + SiLU."""
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride, 1), nn.GroupNorm(4, cout), nn.SiLU())


def _block2d(cin: int, cout: int) -> nn.Sequential:
    """Stride-1 Conv2d + GroupNorm + SiLU, then 2x max-pool: learns outlines far faster than strided convs."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.GroupNorm(4, cout), nn.SiLU(), nn.MaxPool2d(2))


def _pool(h: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Mean and max over `dims`, concatenated: the max keeps a small object from being averaged away."""
    return torch.cat([h.mean(dim=dims), h.amax(dim=dims)], dim=1)


class VideoClassifier(nn.Module):
    """(B, F, H, W, 3) in [0, 1] -> ({attribute: logits (B, classes)}, features (B, feature_dim))."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        aw, mw = cfg.appearance_widths, cfg.motion_widths
        self.appearance = nn.Sequential(*[_block2d(a, b) for a, b in zip((3, *aw), aw, strict=False)])
        # The first 3D block keeps every frame: a motion of ~2 px/frame shows only at the full frame rate.
        strides = [(1, 2, 2)] + [(2, 2, 2)] * (len(mw) - 1)
        self.motion = nn.Sequential(*[_block3d(a, b, s) for a, b, s in zip((3, *mw), mw, strides, strict=False)])
        self.embed = nn.Sequential(nn.Linear(2 * (aw[-1] + mw[-1]), cfg.feature_dim), nn.SiLU())
        self.heads = nn.ModuleDict({name: nn.Linear(cfg.feature_dim, len(v)) for name, v in cfg.classes.items()})
        idx = torch.linspace(0, cfg.frames - 1, cfg.appearance_frames).round().long()
        self.register_buffer("frame_index", idx, persistent=False)

    def features(self, videos: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, feature_dim): what the heads see and the Frechet distance compares."""
        x = videos.float() * 2 - 1  # (B, F, H, W, 3) in [-1, 1]
        b, k = x.shape[0], self.cfg.appearance_frames
        frames = x[:, self.frame_index].permute(0, 1, 4, 2, 3).reshape(b * k, 3, *x.shape[2:4])
        look = _pool(self.appearance(frames), (2, 3)).view(b, k, -1).mean(1)
        move = _pool(self.motion(x.permute(0, 4, 1, 2, 3)), (2, 3, 4))
        return self.embed(torch.cat([look, move], dim=1))

    def forward(self, videos: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Logits of every head and the features they were computed from."""
        feats = self.features(videos)
        return {name: head(feats) for name, head in self.heads.items()}, feats


def shipped_classifier_dir() -> Path:
    """The trained classifier that ships inside the package."""
    return Path(str(resources.files("accvideo") / "assets" / "classifier"))


def save_classifier(model: VideoClassifier, out: str | Path, **info) -> Path:
    """Write classifier.safetensors and classifier.json (config plus `info` such as training facts)."""
    from accvideo.core.files import temp_name, write_text_atomic
    from accvideo.core.tensorfile import write_safetensors

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = temp_name(out / WEIGHTS_NAME)  # renamed into place: a link there is replaced, never written through
    try:
        write_safetensors(state, {"format": "pt"}, tmp)  # readable as the umask allows (save_file: 600)
        os.replace(tmp, out / WEIGHTS_NAME)
    finally:
        tmp.unlink(missing_ok=True)
    write_text_atomic(out / CONFIG_NAME, json.dumps({"config": asdict(model.cfg), "info": info}, indent=2) + "\n")
    return out


def load_classifier(path: str | Path | None = None, device: str | torch.device = "cpu") -> VideoClassifier:
    """Load a classifier folder (default: the shipped one) in eval mode; safetensors weights only.

    Both files go through the input guard (core/inputs.py): a truncated, corrupt or mismatched classifier is one line.
    """
    from accvideo.core.inputs import load_safetensors, read_json

    path = Path(path) if path is not None else shipped_classifier_dir()
    weights, config = path / WEIGHTS_NAME, path / CONFIG_NAME
    if not weights.is_file() or not config.is_file():
        raise AccVideoError(
            f"{path} holds no trained classifier ({WEIGHTS_NAME} + {CONFIG_NAME}); "
            "train one with `accvideo world-train-classifier --out DIR` and pass --classifier DIR"
        )
    fix = "retrain it with `accvideo world-train-classifier --out DIR`"
    try:
        raw = read_json(config, fix)["config"]
        tuples = {k: tuple(raw[k]) for k in ("appearance_widths", "motion_widths") if k in raw}
        cfg = ClassifierConfig(**{**raw, **tuples})
    except (KeyError, TypeError, ValueError) as exc:
        raise AccVideoError(f"{config} is not a valid classifier config ({exc}); {fix}") from None
    model = VideoClassifier(cfg)
    state = load_safetensors(weights, fix)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise AccVideoError(f"{weights} does not match {config} ({str(exc).splitlines()[0]}); {fix}") from None
    check_finite(weights, state)
    return model.to(device).eval().requires_grad_(False)


def check_finite(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse classifier weights holding a NaN or infinite value, as student weights are (models/student.py): their
    features are NaN, and evaluate's Frechet distance failed with numpy's LinAlgError traceback."""
    bad = first_non_finite(tensors.items())
    if bad is not None:
        raise AccVideoError(
            f"{path}: {bad} holds NaN or infinite values (a damaged classifier, or one saved by a run that "
            "diverged); retrain it with `accvideo world-train-classifier --out DIR` and pass --classifier DIR"
        )


def check_clips(videos: np.ndarray | torch.Tensor, cfg: ClassifierConfig, what: str = "videos") -> None:
    """Raise AccVideoError naming the fix unless `videos` is (N, frames, height, width, 3) as cfg expects."""
    shape = tuple(videos.shape)
    want = (cfg.frames, cfg.height, cfg.width, 3)
    if len(shape) != 5 or shape[1:] != want:
        got = "x".join(map(str, shape[1:])) if len(shape) == 5 else f"an array of shape {shape}"
        raise AccVideoError(
            f"{what} are {got} (frames x height x width x channels) but the classifier expects "
            f"{want[0]}x{want[1]}x{want[2]}x3; generate with --frames {cfg.frames} --size {cfg.height}x{cfg.width}"
        )


def as_float_clips(videos: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
    """Clips as a contiguous float32 tensor in [0, 1]; uint8 input is scaled by 1/255. Contiguous: the classifier's
    convolutions round by memory layout, so the same clips score the same whether sampled (a transposed view of the
    decode) or read back from a folder."""
    if isinstance(videos, (list, tuple)):
        videos = np.stack([np.asarray(v) for v in videos]) if len(videos) else np.zeros((0, 0, 0, 0, 3), np.float32)
    t = torch.as_tensor(np.asarray(videos)) if not isinstance(videos, torch.Tensor) else videos
    return (t.float() / 255.0 if t.dtype == torch.uint8 else t.float().clamp(0, 1)).contiguous()


@torch.no_grad()
def classify(
    model: VideoClassifier, videos, batch_size: int = 32, progress: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Predicted class indices per attribute {name: (N,)} and features (N, feature_dim) as float64."""
    from accvideo.core.progress import progress_bar

    clips = as_float_clips(videos)
    check_clips(clips, model.cfg)
    device = next(model.parameters()).device
    preds: dict[str, list[np.ndarray]] = {name: [] for name in model.cfg.classes}
    feats: list[np.ndarray] = []
    starts = range(0, len(clips), batch_size)
    for i in progress_bar(starts, desc="classifying", unit="batch", show=progress, transient=True):
        logits, f = model(clips[i : i + batch_size].to(device))
        feats.append(f.double().cpu().numpy())
        for name, lg in logits.items():
            preds[name].append(lg.argmax(-1).cpu().numpy())
    empty = np.zeros((0,), dtype=np.int64)
    return (
        {k: np.concatenate(v) if v else empty for k, v in preds.items()},
        np.concatenate(feats) if feats else np.zeros((0, model.cfg.feature_dim)),
    )
