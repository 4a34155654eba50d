"""Video files: MP4 through imageio-ffmpeg, GIF through Pillow; written under a temporary name, then renamed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from accvideo.core.files import temp_name
from accvideo.errors import AccVideoError

MAX_FPS = 1000  # frames a second; ffmpeg fails on absurd rates, printing its own lines and writing nothing


def check_fps(fps: int) -> None:
    """A frame-rate setting: 1 to MAX_FPS; ValueError naming the fix (configs raise it, write_video too)."""
    if not 1 <= fps <= MAX_FPS:
        raise ValueError(f"fps must lie in [1, {MAX_FPS:,}] (frames a second, e.g. --fps 8); got {fps}")


def to_uint8(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """(F, H, W, 3) floats in [0, 1] -> uint8 array."""
    if isinstance(video, torch.Tensor):
        video = video.detach().float().cpu().numpy()
    return (np.clip(video, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_video(
    path: str | Path,
    video: torch.Tensor | np.ndarray,
    fps: int = 8,
    before_replace: Callable[[Path], None] | None = None,
) -> Path:
    """Write (F, H, W, 3) frames in [0, 1] (or uint8) as .mp4 or .gif, atomically; `before_replace(tmp)` runs on the
    whole temporary file just before it takes `path`'s name (core/outputs.vouch)."""

    path = Path(path)
    frames = video if isinstance(video, np.ndarray) and video.dtype == np.uint8 else to_uint8(video)
    tmp = temp_name(path)
    tmp = tmp.with_name(tmp.name + path.suffix)  # the writer picks the format from the suffix
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"unsupported video extension {path.suffix!r}; use .mp4 or .gif")
    try:
        check_fps(fps)
    except ValueError as exc:
        raise AccVideoError(str(exc)) from None
    try:
        _write_frames(tmp, suffix, frames, fps)
        if not tmp.is_file():  # an encoder that failed quietly: never a rename of nothing
            raise RuntimeError("it wrote no file")
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) or not isinstance(exc, Exception):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise AccVideoError(f"cannot write video {path} (the encoder failed: {first}); choose another --out") from None
    return path


def _write_frames(tmp: Path, suffix: str, frames: np.ndarray, fps: int) -> None:
    import imageio.v2 as imageio

    if suffix == ".gif":
        imageio.mimsave(tmp, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
    elif suffix == ".mp4":
        with imageio.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            quality=9,
            macro_block_size=1,
            ffmpeg_log_level="error",
            output_params=["-pix_fmt", "yuv420p"],
        ) as writer:
            for frame in frames:
                writer.append_data(frame)


def read_video(path: str | Path) -> np.ndarray:
    """All frames of a video file as uint8 (F, H, W, 3)."""
    import imageio.v3 as iio

    path = Path(path)
    try:
        frames = np.asarray(iio.imread(path, index=None))
    except FileNotFoundError:
        raise AccVideoError(f"video {path} does not exist; check the path") from None
    except Exception as exc:  # noqa: BLE001 - imageio and its plugins raise many types for a damaged file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise AccVideoError(f"video {path} is not readable ({first}); re-encode or remove it") from None
    if frames.ndim != 4 or frames.shape[-1] < 3 or frames.shape[0] == 0:
        raise AccVideoError(f"video {path} holds no RGB frames (shape {frames.shape}); re-encode or remove it")
    return frames[..., :3]


# past any video model's positions: bounds checked before the form checks, so their examples are sane numbers
MAX_FRAMES = 10_000
MAX_SIDE = 100_000


def check_video_size(
    frames: int | None, height: int | None, width: int | None, frame_step: int = 4, multiple: int = 16
) -> None:
    """Raise ValueError naming the fix unless frames = step*k + 1 and height, width are multiples (None: the model's
    default, checked once resolved)."""
    if frames is not None and frames > MAX_FRAMES:  # its 4k+1 neighbours would lie past 64 bits
        raise ValueError(f"frames must be at most {MAX_FRAMES:,} (the teachers make 17 to 129); got {frames}")
    if frames is not None and (frames < 1 or (frames - 1) % frame_step):
        near = max(1, (frames - 1) // frame_step * frame_step + 1)
        raise ValueError(
            f"frames must be of the form {frame_step}k+1 (e.g. {near} or {near + frame_step}); got {frames}"
        )
    for name, v in (("height", height), ("width", width)):
        if v is not None and v > MAX_SIDE:
            raise ValueError(f"{name} must be at most {MAX_SIDE:,} pixels (the teachers make 480 to 1280); got {v}")
        if v is not None and (v < multiple or v % multiple):
            fix = max(multiple, round(v / multiple) * multiple)
            raise ValueError(f"{name} must be a positive multiple of {multiple} (e.g. {fix}); got {v}")
