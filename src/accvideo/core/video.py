"""Video files: MP4 through the ffmpeg binary imageio-ffmpeg ships (run here, its exit status checked), GIF encoded in
memory through imageio/Pillow; written under a temporary name, then renamed."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from accvideo.core.files import temp_name, write_text_atomic
from accvideo.core.inputs import object_lines, read_small_file
from accvideo.errors import AccVideoError

MAX_FPS = 1000  # frames a second; ffmpeg fails on absurd rates, printing its own lines and writing nothing


# A folder of clips (`sample --prompts` writes one, `evaluate --videos` reads one): clip i is video_name(i), and a
# manifest lists each clip's file, prompt and seed (evaluate/folder.py reads it).
MANIFESTS = ("manifest.jsonl", "manifest.json")


def manifest_entries(folder: Path) -> list[dict]:
    """The entries of folder's manifest.jsonl; a line that is not a JSON object (the last, half-appended when its
    writer was killed) lists nothing, and an absent or unreadable manifest lists nothing."""
    try:  # no small regular file (a FIFO: reading it hung) lists nothing either; a write replaces it
        text = read_small_file(folder / MANIFESTS[0], 1 << 30).decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return []
    return object_lines(text)


def write_manifest(folder: Path, entries: Iterable[dict]) -> None:
    """Replace folder's manifest.jsonl with `entries`, one JSON line each, atomically."""
    write_text_atomic(folder / MANIFESTS[0], "".join(json.dumps(e) + "\n" for e in entries))


def video_name(index: int, suffix: str = ".mp4") -> str:
    """The naming convention for clip `index` of a folder of clips: 000000.mp4, 000001.mp4, ..."""
    return f"{index:06d}{suffix}"


# The names video_name gives (of the formats clip folders hold): the only files a clip folder's writer removes.
CLIP_NAME = re.compile(r"[0-9]{6}\.(mp4|gif|npy)")


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
    rename: bool = True,
) -> Path:
    """Write (F, H, W, 3) frames in [0, 1] (or uint8) as .mp4 or .gif, atomically; `before_replace(tmp)` runs on the
    whole temporary file just before it takes `path`'s name (core/outputs.vouch).

    A failed write (ffmpeg's exit status, a full disk, a file-size limit) raises `write_error`'s error naming `path`
    and the cause; the temporary file is removed and whatever `path` held is kept. `rename=False` returns the whole
    temporary file instead of renaming it, for a caller that puts several files into place together (sample/run.py);
    it then removes that file itself if it does not rename it.
    """

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
        try:
            _write_frames(tmp, suffix, frames, fps)
            if not tmp.is_file():  # an encoder that failed quietly: never a rename of nothing
                raise RuntimeError("it wrote no file")
        except Exception as exc:  # noqa: BLE001 - the encoders raise many types; each becomes one named error
            raise write_error(path, exc) from None
        if not rename:
            return tmp
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class EncoderFailed(Exception):
    """ffmpeg exited with an error; `errno` is the file error its own lines name (ENOSPC, EFBIG) when they name one."""

    def __init__(self, message: str, errno_: int | None = None, fix: str = "choose another --out"):
        super().__init__(message)
        self.errno = errno_
        self.fix = fix


# ffmpeg's words for the file errors a user can fix (its lines end in strerror)
_FFMPEG_ERRNO = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "File too large": errno.EFBIG,
    "Permission denied": errno.EACCES,
    "Read-only file system": errno.EROFS,
}


# the file errors cli.fault_line words as one line with the fix: raised as OSErrors naming the final file
_FAULTS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO}
_FAULTS |= {errno.EMFILE, errno.ENFILE, errno.ENAMETOOLONG, errno.ELOOP}


def write_error(path: str | Path, exc: Exception) -> Exception:
    """What a failed write of `path` raises, naming `path` (never its temporary name): a full disk, the file-size
    limit (ulimit -f, or the file system's largest file: EFBIG), no permission... as an OSError of that cause, which
    cli.fault_line turns into one line with the fix; any other failure (an encoder's, another file error) is one
    AccVideoError line."""
    code = getattr(exc, "errno", None)
    if code in _FAULTS:
        return OSError(code, os.strerror(code), str(path))
    if isinstance(exc, OSError) or code is not None:
        return AccVideoError(f"cannot write {path} ({os.strerror(code) if code else exc}); choose another --out")
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
    fix = getattr(exc, "fix", "choose another --out")
    return AccVideoError(f"cannot write video {path} (the encoder failed: {first}); {fix}")


def _write_frames(tmp: Path, suffix: str, frames: np.ndarray, fps: int) -> None:
    if suffix == ".gif":
        tmp.write_bytes(_gif_bytes(frames, fps))
    elif suffix == ".mp4":
        _run_ffmpeg(tmp, frames, fps)


def _gif_bytes(frames: np.ndarray, fps: int) -> bytes:
    """The GIF, encoded in memory: written by Pillow into the file itself, a full disk surfaced again from imageio's
    finalizer as a 20-line 'Exception ignored' traceback; written here, it is an ordinary OSError."""
    import imageio.v2 as imageio

    buffer = io.BytesIO()
    imageio.mimsave(buffer, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
    return buffer.getvalue()


def _ffmpeg_command(tmp: Path, frames: np.ndarray, fps: int) -> list[str]:
    """The command imageio-ffmpeg's writer ran for us (libx264 at quality 9, i.e. CRF 5, yuv420p, no resizing), so
    clips are byte for byte what they were; run here so its exit status and its lines are ours to read."""
    import imageio_ffmpeg

    height, width = frames.shape[1:3]
    return [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-y",
        "-f",
        "rawvideo",
        "-vcodec",
        "rawvideo",
        "-s",
        f"{width}x{height}",
        "-pix_fmt",
        "rgb24",
        "-r",
        str(fps),
        "-i",
        "-",
        "-an",
        "-vcodec",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-crf",
        "5",
        "-v",
        "error",
        "-pix_fmt",
        "yuv420p",
        str(tmp),
    ]


def _run_ffmpeg(tmp: Path, frames: np.ndarray, fps: int) -> None:
    """Encode `frames` into `tmp` with ffmpeg; EncoderFailed unless it exits 0. imageio ignored the exit status, so a
    clip cut short by a full disk was kept and reported written, and ffmpeg's lines reached the terminal: they are
    captured here and only their cause is kept. A closed pipe (ffmpeg stopped early) is its exit status's to tell."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"a video is (frames, height, width, 3); got shape {frames.shape}")
    data = memoryview(np.ascontiguousarray(frames)).cast("B")  # bytes as one flat view: communicate slices it
    command = _ffmpeg_command(tmp, frames, fps)
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:  # the program, not the clip: never read as a file error of the clip
        raise EncoderFailed(f"cannot run {command[0]} ({exc.strerror}); set IMAGEIO_FFMPEG_EXE to an ffmpeg") from None
    try:
        _, err = process.communicate(data)
    except BaseException:  # Ctrl-C: ffmpeg stops with us, never finishing a file behind our back
        process.kill()
        process.wait()
        raise
    if process.returncode == 0:
        return
    lines = err.decode(errors="replace").strip().splitlines()
    if process.returncode == -signal.SIGXFSZ:  # the file-size limit's signal, where it is not ignored
        raise EncoderFailed("killed by SIGXFSZ", errno.EFBIG)
    cause = next((code for words, code in _FFMPEG_ERRNO.items() for line in lines if words in line), None)
    if not lines:  # an ffmpeg names what failed (`-v error`): this program is none (IMAGEIO_FFMPEG_EXE=/bin/false)
        raise EncoderFailed(
            f"{command[0]} exited with status {process.returncode} and said nothing",
            fix="set IMAGEIO_FFMPEG_EXE to a working ffmpeg, or unset it to use the bundled one",
        )
    raise EncoderFailed(lines[-1].split("] ", 1)[-1], cause)


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


def largest_video(positions: int, patch: Sequence[int], temporal: int, spatial: int) -> dict[str, int]:
    """The largest frames, height and width a transformer whose position table holds `positions` per axis (Wan's
    rope_max_seq_len) indexes, with patch (t, h, w) over a VAE compressing time `temporal`x and space `spatial`x."""
    pt, ph, pw = patch
    return {
        "frames": (positions * pt - 1) * temporal + 1,
        "height": positions * ph * spatial,
        "width": positions * pw * spatial,
    }


def check_video_size(
    frames: int | None, height: int | None, width: int | None, frame_step: int = 4, multiple: int = 16
) -> None:
    """Raise ValueError naming the fix unless frames = step*k + 1 and height, width are multiples (None: the model's
    default, checked once resolved)."""
    if frames is not None and frames > MAX_FRAMES:  # its 4k+1 neighbours would lie past 64 bits
        raise ValueError(f"frames must be at most {MAX_FRAMES:,} (the teachers make 17 to 129); got {frames}")
    if frames is not None and frames < 1:  # was "of the form 1k+1 (e.g. 1 or 2)" where only bounds are checked
        raise ValueError(f"frames must be at least 1 (the teachers make 17 to 129); got {frames}")
    if frames is not None and (frames - 1) % frame_step:
        near = max(1, (frames - 1) // frame_step * frame_step + 1)
        valid = " or ".join(str(f) for f in (near, near + frame_step) if f <= MAX_FRAMES)  # 10,000: 9997 alone
        raise ValueError(f"frames must be of the form {frame_step}k+1 (e.g. {valid}); got {frames}")
    for name, v in (("height", height), ("width", width)):
        if v is not None and v > MAX_SIDE:
            raise ValueError(f"{name} must be at most {MAX_SIDE:,} pixels (the teachers make 480 to 1280); got {v}")
        if v is not None and v < 1:  # the bounds-only check (multiple 1) read "a positive multiple of 1 (e.g. 1)"
            raise ValueError(f"{name} must be at least 1 pixel (the teachers make 480 to 1280); got {v}")
        if v is not None and (v < multiple or v % multiple):
            fix = max(multiple, round(v / multiple) * multiple)
            raise ValueError(f"{name} must be a positive multiple of {multiple} (e.g. {fix}); got {v}")
