"""A folder of clips to score: video files plus a manifest giving each clip's prompt and seed."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from accvideo.core.files import remove_stale_temps, temp_name, write_json_atomic
from accvideo.core.inputs import parse_json
from accvideo.core.video import (
    CLIP_NAME,
    MANIFESTS,
    manifest_entries,
    read_video,
    to_uint8,
    video_name,
    write_manifest,
    write_video,
)
from accvideo.errors import AccVideoError

VIDEO_SUFFIXES = (".mp4", ".gif", ".npy")


def read_manifest(folder: Path) -> list[dict]:
    """Manifest entries: manifest.jsonl (one JSON object a line) or manifest.json (a list of objects)."""
    for name in MANIFESTS:
        path = folder / name
        if not path.is_file():
            continue
        try:
            if name.endswith(".jsonl"):
                entries = [parse_json(line) for line in path.read_text().splitlines() if line.strip()]
            else:
                entries = parse_json(path.read_text())
        except json.JSONDecodeError as exc:
            raise AccVideoError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); fix or rewrite it") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise AccVideoError(f"{path} must hold JSON objects with 'prompt' and 'seed' (and optionally 'file')")
        return entries
    raise AccVideoError(
        f"{folder} has no manifest.jsonl; write one line per clip: "
        '{"file": "000000.mp4", "prompt": "a red circle moving left on a grey background", "seed": 0}'
    )


def _find_file(folder: Path, entry: dict, index: int) -> Path:
    """The entry's 'file', else the conventional name with any known suffix."""
    if "file" in entry:
        path = folder / str(entry["file"])
        if path.is_dir():
            raise AccVideoError(f"manifest entry {index} names {path}, which is a folder, not a clip; fix the manifest")
        if not path.is_file():
            raise AccVideoError(f"manifest entry {index} names {path}, which does not exist; fix the manifest")
        return path
    for suffix in VIDEO_SUFFIXES:
        path = folder / video_name(index, suffix)
        if path.is_file():
            return path
    raise AccVideoError(f"no clip {video_name(index)} (or .gif/.npy) for manifest entry {index} in {folder}")


FLOAT_SLACK = 1e-3  # float frames a little outside [0, 1] (rounding) are taken as they are


def read_clip(path: Path) -> np.ndarray:
    """One clip as (F, H, W, 3): uint8 from .mp4/.gif, as stored (uint8 or float in [0, 1]) from .npy."""
    try:
        clip = np.load(path, allow_pickle=False) if path.suffix == ".npy" else read_video(path)
    except AccVideoError:  # read_video's own line, with its fix
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file
        raise AccVideoError(f"cannot read {path} ({type(exc).__name__}: {exc}); re-encode it as .mp4 or .npy") from None
    if clip.ndim != 4 or clip.shape[-1] != 3:
        raise AccVideoError(f"{path} is not an RGB clip (array of shape {clip.shape}); write (F, H, W, 3) frames")
    if clip.dtype != np.uint8 and not np.issubdtype(clip.dtype, np.floating):
        raise AccVideoError(f"{path} holds {clip.dtype} frames; write uint8 frames or floats in [0, 1]")
    if clip.dtype != np.uint8 and not np.isfinite(clip).all():
        raise AccVideoError(f"{path} holds NaN or infinite values; write finite frames in [0, 1] (or uint8)")
    if clip.dtype != np.uint8 and clip.size and not (-FLOAT_SLACK <= clip.min() and clip.max() <= 1 + FLOAT_SLACK):
        # frames of 0..255 as floats were scored as if saturated: wrong numbers, exit 0
        raise AccVideoError(
            f"{path} holds float frames in [{clip.min():g}, {clip.max():g}], not in [0, 1]; divide 0-255 frames by "
            "255 (or write uint8)"
        )
    return clip


def load_video_folder(
    folder: str | Path, expect: Sequence[int] | None = None
) -> tuple[np.ndarray, list[tuple[str, int]], list[str]]:
    """Clips (N, F, H, W, 3) (uint8 when every file is 8-bit, else float32 in [0, 1]), (prompt, seed) pairs, names.

    With `expect` = (frames, height, width), a clip of another size fails with an AccVideoError naming it.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise AccVideoError(f"video folder {folder} does not exist; pass --videos a folder with clips and a manifest")
    entries = read_manifest(folder)
    if not entries:
        raise AccVideoError(f"the manifest in {folder} lists no clips")
    # one array of every clip, filled as each is read: a list of clips, then np.stack, held them twice
    videos, shapes, pairs, files = None, set(), [], []
    for i, entry in enumerate(entries):
        if "prompt" not in entry or "seed" not in entry:
            raise AccVideoError(f"manifest entry {i} in {folder} lacks 'prompt' or 'seed'; give both for every clip")
        try:
            seed = int(entry["seed"])
        except (TypeError, ValueError):
            raise AccVideoError(f"manifest entry {i} in {folder}: seed {entry['seed']!r} is not an integer") from None
        path = _find_file(folder, entry, i)
        clip = read_clip(path)
        if expect is not None and tuple(clip.shape[:3]) != tuple(expect):
            f, h, w = expect
            raise AccVideoError(
                f"{path.name} is {clip.shape[0]} frames of {clip.shape[1]}x{clip.shape[2]} but the classifier "
                f"expects {f} frames of {h}x{w}; generate with --frames {f} --size {h}x{w}"
            )
        shapes.add(clip.shape)
        if len(shapes) == 1:  # else: only the shapes are still gathered, for the line below
            if videos is None:
                videos = np.empty((len(entries), *clip.shape), np.uint8 if clip.dtype == np.uint8 else np.float32)
            elif videos.dtype == np.uint8 and clip.dtype != np.uint8:  # the first float clip: floats from here on
                videos = _as_float(videos)
            videos[i] = clip if videos.dtype == np.uint8 else _as_float(clip)  # a uint8 array: every clip so far is
        pairs.append((str(entry["prompt"]), seed))
        files.append(path.name)
    if len(shapes) > 1:
        raise AccVideoError(f"clips in {folder} differ in shape ({sorted(shapes)}); give every clip the same size")
    return videos, pairs, files


def _as_float(clips: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]: uint8 / 255 (computed in float64, as before), floats clipped to [0, 1]."""
    return (clips / 255.0 if clips.dtype == np.uint8 else np.clip(clips, 0, 1)).astype(np.float32)


def write_video_folder(
    folder: str | Path, videos: np.ndarray, pairs: Sequence[tuple[str, int]], fmt: str = "mp4", fps: int = 8
) -> Path:
    """Write clips under the naming convention plus manifest.jsonl, so the folder can be re-scored.

    A rewrite leaves exactly the clips its manifest lists: the clips an earlier write listed (or was writing when
    killed) and this one does not write are removed; nothing else in the folder is touched. The manifest never lists
    a clip that is being replaced or removed, so a run killed at any point leaves every listed clip intact.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder)  # half-written clips of a killed writer (never a live one's)
    names = [video_name(i, "." + fmt) for i in range(len(pairs))]
    old = manifest_entries(folder)
    own = _own_clips(folder, old)
    write_json_atomic(folder / PENDING, sorted(own | set(names)))  # what a killed write may leave: cleaned next time
    write_manifest(folder, [e for e in old if e.get("file") not in names])  # nothing listed is overwritten below
    for name, clip in zip(names, videos, strict=True):
        if fmt == "npy":
            _save_npy(folder / name, clip if clip.dtype == np.uint8 else to_uint8(clip))  # 8 bits, as a video file
        else:
            write_video(folder / name, clip, fps)
    write_manifest(folder, [{"file": n, "prompt": p, "seed": int(s)} for n, (p, s) in zip(names, pairs, strict=True)])
    for name in sorted(own - set(names)):
        (folder / name).unlink(missing_ok=True)
    (folder / PENDING).unlink(missing_ok=True)
    return folder


def clear_video_folder(folder: str | Path) -> None:
    """Remove the clips and manifest `write_video_folder` wrote in `folder` (and the folder, when that empties it);
    anything else there is kept. The manifest goes first, so it never lists a removed clip."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    remove_stale_temps(folder)
    own = _own_clips(folder, manifest_entries(folder))
    write_json_atomic(folder / PENDING, sorted(own))
    (folder / MANIFESTS[0]).unlink(missing_ok=True)
    for name in sorted(own):
        (folder / name).unlink(missing_ok=True)
    (folder / PENDING).unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()


# The clip names `write_video_folder` writes, and the hidden list of those a write in progress may leave behind.
PENDING = ".accvideo-clips.json"


def _own_clips(folder: Path, entries: list[dict]) -> set[str]:
    """Clip files of `write_video_folder`'s in `folder`: those its manifest lists and those a killed write listed as
    pending, by the naming convention only (never a user's other file)."""
    try:
        pending = parse_json((folder / PENDING).read_text())
    except (OSError, ValueError):
        pending = []
    listed = [e.get("file") for e in entries] + (pending if isinstance(pending, list) else [])
    return {n for n in listed if isinstance(n, str) and CLIP_NAME.fullmatch(n) and (folder / n).is_file()}


def _save_npy(path: Path, clip: np.ndarray) -> None:
    """np.save under a temporary name, then rename: a reader never sees half a clip."""
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            np.save(f, clip)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
