"""A folder of clips to score: video files plus a manifest giving each clip's prompt and seed."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from accvideo.core.files import file_sha256, remove_stale_temps, temp_name, write_json_atomic
from accvideo.core.inputs import not_regular, parse_json
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
from accvideo.synthesize.prompts import is_seed, utf8_lines

VIDEO_SUFFIXES = (".mp4", ".gif", ".npy")


def read_manifest(folder: Path) -> list[dict]:
    """Manifest entries: manifest.jsonl (one JSON object a line) or manifest.json (a list of objects)."""
    for name in MANIFESTS:
        path = folder / name
        if not path.is_file():
            continue
        lines = _text_lines(path)
        if name.endswith(".jsonl"):
            entries = []
            for lineno, line in lines:
                if line.strip():
                    entries.append(_parse(path, line, lineno))
        else:
            entries = _parse(path, "\n".join(line for _, line in lines))
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise AccVideoError(f"{path} must hold JSON objects with 'prompt' and 'seed' (and optionally 'file')")
        return entries
    raise AccVideoError(
        f"{folder} has no manifest.jsonl; write one line per clip: "
        '{"file": "000000.mp4", "prompt": "a red circle moving left on a grey background", "seed": 0}'
    )


def _text_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of each line of a manifest, read as UTF-8 as prompt files are (`utf8_lines`)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AccVideoError(f"cannot read {path} ({exc.strerror}); check its permissions") from None
    return list(utf8_lines(raw, path))


def _parse(path: Path, text: str, lineno: int | None = None):
    """The JSON of a manifest (or of its line `lineno`), or one line naming the file and the line."""
    try:
        return parse_json(text)
    except json.JSONDecodeError as exc:
        line = exc.lineno if lineno is None else lineno
        raise AccVideoError(f"{path} is not valid JSON (line {line}: {exc.msg}); fix or rewrite it") from None


def _find_file(folder: Path, entry: dict, index: int) -> Path:
    """The entry's 'file', else the conventional name with any known suffix."""
    if "file" in entry:
        path = folder / str(entry["file"])
        _check_regular(path, index)
        if not path.is_file():
            raise AccVideoError(f"manifest entry {index} names {path}, which does not exist; fix the manifest")
        return path
    for suffix in VIDEO_SUFFIXES:
        path = folder / video_name(index, suffix)
        if path.is_file():
            return path
    for suffix in VIDEO_SUFFIXES:  # none is a clip file: one that is there as a FIFO or a folder is named
        _check_regular(folder / video_name(index, suffix), index)
    raise AccVideoError(f"no clip {video_name(index)} (or .gif/.npy) for manifest entry {index} in {folder}")


def _check_regular(path: Path, index: int) -> None:
    """Refuse a clip path that exists and is no regular file: a folder, a FIFO (it was said not to exist; reading
    it would wait for a writer forever), a device."""
    kind = not_regular(path)
    if kind is not None:
        raise AccVideoError(f"manifest entry {index} names {path}, which is {kind}, not a clip; fix the manifest")


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


class VideoFolder:
    """A folder's clips as `load_video_folder` gives them, read when sliced (`folder[i:j]`: (j - i, F, H, W, 3))
    instead of held: `evaluate --videos` scores it SCORE_CHUNK clips at a time, so its memory does not grow with the
    clip count (all of them held took 1 GB for 4,000 clips of 17x64x64). The manifest is checked whole when opened;
    each clip as it is read (`read_clip`, its size against `expect` and the first clip's)."""

    def __init__(self, folder: str | Path, expect: Sequence[int] | None = None):
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise AccVideoError(
                f"video folder {folder} does not exist; pass --videos a folder with clips and a manifest"
            )
        entries = read_manifest(folder)
        if not entries:
            raise AccVideoError(f"the manifest in {folder} lists no clips")
        self.folder, self.expect = folder, None if expect is None else tuple(expect)
        self.paths: list[Path] = []
        self.pairs: list[tuple[str, int]] = []
        self.digests: list[str | None] = []  # `sample --prompts` lists each clip's sha256: a replaced one is refused
        for i, entry in enumerate(entries):
            if "prompt" not in entry or "seed" not in entry:
                raise AccVideoError(
                    f"manifest entry {i} in {folder} lacks 'prompt' or 'seed'; give both for every clip"
                )
            seed = entry["seed"]
            if not is_seed(seed):  # as a JSONL prompt row's: -5 crashed numpy; true, 1.9 and 2**70 scored silently
                raise AccVideoError(
                    f"manifest entry {i} in {folder}: seed must be an integer in [0, 2^63); got {seed!r}"
                )
            self.paths.append(_find_file(folder, entry, i))
            self.pairs.append((str(entry["prompt"]), seed))
            digest = entry.get("sha256") if "file" in entry else None
            self.digests.append(digest if isinstance(digest, str) else None)
        self.files = [p.name for p in self.paths]
        # uint8 when every file is 8-bit, else float32 in [0, 1]: known from the .npy headers, before any clip is read
        self.dtype = np.float32 if any(_npy_is_float(p) for p in self.paths) else np.uint8
        self._clip_shape: tuple[int, ...] | None = None
        self._read(0)  # a folder of another size (the usual mistake) is refused now, before any output is checked

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._clip_shape)  # the first clip's, read when opened: every other is read so or refused

    def _read(self, i: int) -> np.ndarray:
        path = self.paths[i]
        if self.digests[i] is not None and file_sha256(path) != self.digests[i]:  # was scored as the listed prompt
            raise AccVideoError(
                f"{path} is not the clip the manifest in {self.folder} lists (its sha256 differs: replaced or edited "
                "since it was written); rerun the `accvideo sample --prompts` that wrote the folder (it samples that "
                'row again), or drop the entry\'s "sha256" to score the file as it is'
            )
        clip = read_clip(path)
        if self.expect is not None and tuple(clip.shape[:3]) != self.expect:
            f, h, w = self.expect
            raise AccVideoError(
                f"{path.name} is {clip.shape[0]} frames of {clip.shape[1]}x{clip.shape[2]} but the classifier "
                f"expects {f} frames of {h}x{w}; generate with --frames {f} --size {h}x{w}"
            )
        if self._clip_shape is None:
            self._clip_shape = clip.shape
        elif clip.shape != self._clip_shape:
            shapes = sorted({self._clip_shape, clip.shape})
            raise AccVideoError(f"clips in {self.folder} differ in shape ({shapes}); give every clip the same size")
        return clip if self.dtype == np.uint8 else _as_float(clip)

    def __getitem__(self, index: slice) -> np.ndarray:
        start, stop, _ = index.indices(len(self))
        clips = [self._read(i) for i in range(start, stop)]
        return np.stack(clips) if clips else np.empty((0, *self.shape[1:]), self.dtype)


def _npy_is_float(path: Path) -> bool:
    """Whether an .npy file's header declares floats (video files are 8-bit); an unreadable header says no: the
    clip's read names the fault."""
    if path.suffix != ".npy":
        return False
    try:
        dtype = np.load(path, mmap_mode="r", allow_pickle=False).dtype  # the header only: no data is read
    except Exception:  # noqa: BLE001 - any unreadable file: read_clip says what is wrong with it
        return False
    return np.issubdtype(dtype, np.floating)


def load_video_folder(
    folder: str | Path, expect: Sequence[int] | None = None
) -> tuple[np.ndarray, list[tuple[str, int]], list[str]]:
    """Clips (N, F, H, W, 3) (uint8 when every file is 8-bit, else float32 in [0, 1]), (prompt, seed) pairs, names.

    With `expect` = (frames, height, width), a clip of another size fails with an AccVideoError naming it. Every clip
    held at once: a caller that scores them takes `VideoFolder` instead.
    """
    clips = VideoFolder(folder, expect)
    videos = np.empty(clips.shape, clips.dtype)  # filled as each clip is read: a list, then np.stack, held them twice
    for i in range(len(clips)):
        videos[i] = clips[i : i + 1][0]
    return videos, clips.pairs, clips.files


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
