"""Real videos as a second source of real samples for the heads (beyond the paper).

`real_data=DIR` (a folder of MP4 clips; prompts from DIR/manifest.jsonl, as `accvideo evaluate` writes it, or a
.txt beside each clip, else the empty prompt) or `real_data=world` (the built-in world's renderer, train split).
Clips are brought to the SynVid's frames x height x width (centre-cropped to its aspect, resized, the first F
frames), encoded once by the teacher's VAE and cached beside the run in OUT/reals/, chunk by chunk, so an
interrupted encode resumes. A clip that cannot be read, or is too short, is skipped and counted, never a traceback.
The heads see a real clip noised to t'_k with fresh noise: x = (1 - t'_k) x0 + t'_k eps.
For an image-to-video teacher each clip's own first frame (quantised to 8 bits, as an image file is) is its image:
its conditioning is encoded with the latents and cached with them, and the parts of x the image fixes are set
(Wan 2.2 TI2V's latent frame 0: `keep_given`), as on the stored trajectories.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from accvideo.core import dist
from accvideo.core.adapter import Conditioning, select
from accvideo.core.files import file_sha256, stat_witness, temp_name, write_json_atomic
from accvideo.core.inputs import parse_json, read_small_file
from accvideo.core.progress import progress_bar
from accvideo.core.runtime import batch_noise
from accvideo.core.tensorfile import write_safetensors
from accvideo.core.video import to_uint8
from accvideo.errors import AccVideoError

CHUNK = 16  # clips per cached chunk
CLIPS_VERSION = "8bit"  # in each cached chunk: world renders quantised to 8 bits before fitting (commit 8735ac6)
WORLD = "world"
WITNESSES = "witnesses.json"  # in OUT/reals: each clip file's sha256 and the stat it had when read (_FileDigests)
WITNESS_LIMIT = 1 << 30  # about 5 million clips' witnesses (a regular file only: core/inputs.read_small_file)


@dataclass(frozen=True)
class Source:
    prompt: str
    path: Path | None = None  # a clip file, or None for a world render
    seed: int | None = None  # the world render's seed


def world_sources(n: int, seed: int) -> list[Source]:
    """n train-split world captions with their render seeds (never an evaluation seed)."""
    from accvideo.world import prompts

    return [Source(p, None, s) for p, s in prompts(n, "train", seed)]


def folder_sources(folder: Path, setting: str = "real_data") -> list[Source]:
    """The MP4 clips of a folder in name order, with their prompts (manifest.jsonl, a .txt beside, or '');
    `setting` is the name the command gives the folder, for its errors."""
    if not folder.is_dir():
        raise AccVideoError(f"{setting}={folder} is not a folder of MP4 clips; pass a folder or {setting}=world")
    prompts: dict[str, str] = {}
    manifest = folder / "manifest.jsonl"
    if manifest.is_file():
        for i, line in enumerate(manifest.read_text().splitlines()):
            try:
                entry = parse_json(line) if line.strip() else None
            except json.JSONDecodeError:
                raise AccVideoError(f"{manifest} line {i + 1} is not JSON; fix or delete it") from None
            if isinstance(entry, dict) and "file" in entry:
                prompts[str(entry["file"])] = str(entry.get("prompt", ""))
    clips = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".mp4" and p.is_file())
    if not clips:
        raise AccVideoError(f"{setting}={folder} holds no .mp4 clips; add clips or use {setting}=world")
    out = []
    for p in clips:
        side = p.with_suffix(".txt")
        prompt = prompts.get(p.name, side.read_text().strip() if side.is_file() else "")
        out.append(Source(prompt, p))
    return out


def check_real_data(spec: str, setting: str = "real_data") -> None:
    """Refuse a folder that holds no clips before any model is loaded or any other work is done: the refusal came
    after loading the teacher (minutes at real size), and in `ablate` after its whole SynVid."""
    if spec != WORLD:
        folder_sources(Path(spec).expanduser(), setting)


def fit_clip(clip: np.ndarray, frames: int, height: int, width: int) -> torch.Tensor | None:
    """uint8 (F, H, W, 3) -> float (frames, height, width, 3) in [0, 1]: centre crop to the aspect, resize, first
    `frames` frames; None when the clip has fewer frames."""
    if clip.dtype != np.uint8:  # floats in [0, 1] would be divided by 255 again, near black
        raise TypeError(f"fit_clip takes uint8 frames, got {clip.dtype}")
    if clip.ndim != 4 or clip.shape[-1] != 3 or len(clip) < frames:
        return None
    x = torch.from_numpy(np.ascontiguousarray(clip[:frames])).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    if h * width > w * height:  # too tall: crop rows
        ch = max(1, round(w * height / width))
        x = x[..., (h - ch) // 2 : (h - ch) // 2 + ch, :]
    elif h * width < w * height:  # too wide: crop columns
        cw = max(1, round(h * width / height))
        x = x[..., (w - cw) // 2 : (w - cw) // 2 + cw]
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1).permute(0, 2, 3, 1)


def _load(source: Source, frames: int, height: int, width: int) -> torch.Tensor | None:
    if source.path is None:
        from accvideo.world import parse_caption, render
        from accvideo.world.render import WorldConfig

        clip = render(parse_caption(source.prompt), source.seed, WorldConfig(frames=frames, height=height, width=width))
        # render gives floats in [0, 1]; fit_clip takes 8-bit frames, as a video file's are
        return fit_clip(to_uint8(clip), frames, height, width)
    from accvideo.core.video import read_video

    try:
        clip = read_video(source.path)
    except Exception:  # any decoder failure: a corrupt clip is skipped and counted
        return None
    return fit_clip(clip, frames, height, width)


class RealClips:
    """Encoded real clips (N, C, F', H', W') on the CPU and their prompts' conditioning; draws noised batches."""

    def __init__(
        self, latents: torch.Tensor, prompts: list[str], adapter, skipped: int, image_cond: Conditioning | None = None
    ):
        self.latents = latents
        self.prompts = prompts
        self.skipped = skipped
        unique = sorted(set(prompts))
        self._cond = adapter.encode_prompts(unique)
        self._row = torch.tensor([unique.index(p) for p in prompts])
        self._image_cond = image_cond or {}  # image-to-video: one row per clip, from its first frame
        self._keep_given = adapter.keep_given

    def __len__(self) -> int:
        return len(self.latents)

    def noised(self, picks: torch.Tensor, seeds: list[int], sigma: float, device) -> tuple[torch.Tensor, Conditioning]:
        """Clips `picks` noised to `sigma` with per-item noise from `seeds`, and their conditioning."""
        x0 = self.latents[picks].to(device)
        eps = batch_noise(seeds, x0.shape[1:], device)
        cond = {n: c.to(device) for n, c in select(self._cond, self._row[picks]).items()}
        cond.update({n: c[picks].to(device) for n, c in self._image_cond.items()})
        x = ((1 - sigma) * x0 + sigma * eps).to(x0.dtype)
        return (self._keep_given(x, cond) if self._image_cond else x), cond

    def draw(
        self, rng: torch.Generator, batch: int, weight: float, mine: slice, n_local: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Which of this rank's `n_local` real samples come from real clips (each with probability `weight`), which
        clip, and their noise seeds: drawn for the global `batch` from the run's generator (every rank draws alike),
        then this rank's slice `mine`."""
        use = torch.rand(batch, generator=rng) < weight
        pick = torch.randint(len(self), (batch,), generator=rng)
        seeds = torch.randint(2**31 - 1, (batch,), generator=rng)
        return use[mine][:n_local], pick[mine][:n_local], seeds[mine][:n_local]

    def mix(
        self, real: torch.Tensor, cond: Conditioning, use, pick, seeds, sigma: float
    ) -> tuple[torch.Tensor, Conditioning]:
        """Replace the rows `use` of the real batch (and their conditioning) by real clips noised to `sigma`."""
        if not use.any():
            return real, cond
        rows = use.nonzero().flatten()
        x, c = self.noised(pick[rows], seeds[rows].tolist(), sigma, real.device)
        real, cond = real.clone(), {n: v.clone() for n, v in cond.items()}
        real[rows] = x.to(real.dtype)
        for n in cond:
            cond[n][rows.to(cond[n].device)] = c[n].to(cond[n].dtype)
        return real, cond


def load_real_clips(
    spec: str,
    out: Path,
    adapter,
    shape: tuple[int, int, int],
    count: int,
    seed: int,
    progress: bool = True,
    setting: str = "real_data",
    trained: bool = True,
) -> RealClips:
    """Encode (or read the cache of) the real clips for a run in `out`; shape = (frames, height, width); `setting`:
    what the command calls `spec`, for its errors. `trained`: a checkpoint trained on the cached clips (their
    chunks must then hold the given folder's clips); before one, cached chunks of other clips are encoded again."""
    frames, height, width = shape
    sources = world_sources(count, seed) if spec == WORLD else folder_sources(Path(spec).expanduser(), setting)
    cache = out / "reals"
    cache.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import load_file

    images = bool(getattr(adapter, "image_conditioned", False))
    digests = _FileDigests(cache / WITNESSES)
    latents, prompts, image_cond, skipped = [], [], {}, 0
    starts = range(0, len(sources), CHUNK)
    for i in progress_bar(starts, desc="encode real clips", unit="chunk", show=progress, transient=True):
        path = cache / f"chunk-{i // CHUNK:05d}.safetensors"
        part = sources[i : i + CHUNK]
        digest = _sources_digest(part, len(sources), digests.sha256)
        if path.is_file() and (_stale(path, spec, images) or (not trained and _other_clips(path, spec, digest))):
            path.unlink()
        if path.is_file():
            _check_same_sources(path, digest, spec, setting)
        if not path.is_file():
            clips = [_load(s, frames, height, width) for s in part]
            kept = [(s, c) for s, c in zip(part, clips, strict=True) if c is not None]
            tensors = {"skipped": torch.tensor(len(part) - len(kept))}
            if kept:
                tensors["latents"] = adapter.encode(torch.stack([c for _, c in kept])).float().cpu().contiguous()
            if kept and images:
                firsts = [first_frame_image(c) for _, c in kept]
                for name, value in adapter.encode_images(firsts, frames, height, width).items():
                    tensors[f"image/{name}"] = value.cpu().contiguous()
            tmp = temp_name(path)  # named after its writer (host, pid): a cleanup never takes a live one
            meta = {"prompts": json.dumps([s.prompt for s, _ in kept]), "clips": CLIPS_VERSION, "spec": spec}
            if digest is not None:
                meta["sources"] = digest
            write_safetensors(tensors, meta, tmp)  # deterministic bytes
            os.replace(tmp, path)
            if dist.is_main():
                digests.save(every=30.0)
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            chunk_prompts = parse_json(f.metadata()["prompts"])
        data = load_file(str(path))
        skipped += int(data["skipped"])
        if chunk_prompts:
            latents.append(data["latents"])
            prompts += chunk_prompts
            for name in (k.removeprefix("image/") for k in data if k.startswith("image/")):
                image_cond.setdefault(name, []).append(data[f"image/{name}"])
    if dist.is_main():
        digests.save()
    if not latents:
        raise AccVideoError(
            f"{setting}={spec}: none of {len(sources)} clips could be used (each needs >= {frames} frames, "
            f"RGB; they are cropped and resized to {height}x{width}); add readable clips of at least {frames} frames"
        )
    if skipped and dist.is_main():  # said only in summary.json before: a folder of mostly bad clips trained silently
        warnings.warn(
            f"{setting}={spec}: {skipped} of {len(sources)} clips could not be used (unreadable, not a regular "
            f"file, or fewer than {frames} frames) and are left out; the run uses the other {len(prompts)}",
            stacklevel=2,
        )
    image = {name: torch.cat(parts) for name, parts in image_cond.items()} if images else None
    return RealClips(torch.cat(latents), prompts, adapter, skipped, image)


class _FileDigests:
    """The sha256 of clip files, each read once: a file whose stat (size, times, inode: `stat_witness`, taken before
    it is read) is the one recorded beside its digest in OUT/reals/witnesses.json is not read again, so a resume over
    a large clip folder starts in seconds. A file changed in place, replaced or copied over has another stat and is
    hashed again; what the stat misses is damage below the file system."""

    def __init__(self, path: Path):
        self.path, self.seen, self.saved = path, {}, time.monotonic()
        try:
            known = parse_json(read_small_file(path, limit=WITNESS_LIMIT))
        except (OSError, ValueError):  # none yet, damaged, or no small regular file: every file is hashed
            known = {}
        self.known = known if isinstance(known, dict) else {}

    def sha256(self, path: Path) -> str:
        key, witness = str(path.resolve()), stat_witness(path)
        recorded = self.known.get(key)
        if isinstance(recorded, list) and len(recorded) == 2 and recorded[1] == witness:
            sha = recorded[0]
        else:
            sha = file_sha256(path)
        self.seen[key] = [sha, witness]
        return sha

    def save(self, every: float | None = None) -> None:
        """Keep the witnesses (rank 0; only when they changed). During the encode (`every` seconds apart at most) the
        files read so far are added to those kept, so a stopped encode's resume hashes only what it had not read;
        at its end (`every` None) exactly the files read this time are kept (a clip removed since drops out)."""
        if every is not None and time.monotonic() - self.saved < every:
            return
        kept = {**self.known, **self.seen} if every is not None else self.seen
        if kept != self.known:
            write_json_atomic(self.path, kept, indent=None)
            self.known, self.saved = kept, time.monotonic()


def _sources_digest(part: list[Source], total: int, sha256: Callable[[Path], str] = file_sha256) -> str | None:
    """What a chunk of clip files was encoded from: the folder's clip count, each file's name, prompt and sha256
    (None for world renders, fixed by their captions and seeds)."""
    if all(s.path is None for s in part):
        return None
    digest = hashlib.sha256(str(total).encode())
    for s in part:
        digest.update(json.dumps([s.path.name if s.path else None, s.prompt, s.seed]).encode())
        if s.path is not None:
            digest.update(sha256(s.path).encode())
    return digest.hexdigest()


def _meta(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


def _other_clips(path: Path, spec: str, digest: str | None) -> bool:
    """Whether cached chunk `path` holds other clips than the given ones: another digest, or another folder's name
    on a chunk from before the digests (nothing to tell its clips by)."""
    meta = _meta(path)
    recorded = meta.get("sources")
    if recorded is None:
        return meta.get("spec", spec) != spec
    return digest is not None and recorded != digest


def records_clips(out: Path) -> bool:
    """Whether OUT/reals holds cached chunks of real clips, each recording its clips' digest (so a resume can check
    the clips whatever their folder is called); chunks from before the digests do not, and a cache deleted or not
    yet written records nothing (the folder is then checked by name, as the run recorded it)."""
    chunks = sorted((Path(out) / "reals").glob("chunk-*.safetensors"))
    return bool(chunks) and all("sources" in _meta(c) for c in chunks)


def _check_same_sources(path: Path, digest: str | None, spec: str, setting: str) -> None:
    """Refuse a resume whose clips are not the ones its chunk `path` holds (it trained on the old clips, silently, as
    a SynVid that changed under a run is refused); chunks from before the digest are kept."""
    meta = _meta(path)
    recorded, was = meta.get("sources"), meta.get("spec")
    if recorded is not None and digest is not None and recorded != digest:
        if was is not None and was != spec:  # another folder than the run encoded (or the same one, changed)
            raise AccVideoError(
                f"{setting}={spec} holds other clips than {setting}={was}, which this run encoded into {path.parent} "
                "and trained on; pass those clips as they were, or start the run in another --out"
            )
        raise AccVideoError(
            f"{setting}={spec} changed since this run encoded its clips into {path.parent} (a clip added, removed, "
            "replaced or given another prompt); put the clips back as they were, or start the run in another --out"
        )


def _stale(path: Path, spec: str, images: bool) -> bool:
    """A cached chunk to encode again: world renders cached before they were quantised to 8 bits (before commit
    8735ac6 they were divided by 255 twice: near black), a chunk of another source (`videos=` or `real_data=`
    changed; chunks from before the source was recorded are kept), or a chunk without the image conditioning an
    image-to-video teacher needs."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta, keys = f.metadata() or {}, list(f.keys())
    if spec == WORLD and meta.get("clips") != CLIPS_VERSION:
        return True
    recorded = meta.get("spec", spec)
    if recorded != spec and (WORLD in (recorded, spec) or "sources" not in meta):
        # another source's clips (a rerun with other --videos kept the first one's); a clip folder named another way
        # (moved, or spelled from elsewhere) is kept when the chunk records its clips: `_check_same_sources` checks
        return True
    return images and "latents" in keys and not any(k.startswith("image/") for k in keys)


def first_frame_image(clip: torch.Tensor):
    """A fitted clip's (frames, height, width, 3) first frame in [0, 1] as an RGB PIL image, quantised to 8 bits as
    an image file is (as ToyBench's image-to-video mode gives its first frames)."""
    from PIL import Image

    return Image.fromarray(to_uint8(clip[0]))


def shared_real_clips(
    spec: str,
    out: Path,
    adapter,
    shape: tuple[int, int, int],
    count: int,
    seed: int,
    progress: bool,
    trained: bool = True,
) -> RealClips:
    """The run's real clips under torchrun: encoded once by rank 0 into OUT/reals (resumable), then read from the
    cache by every other rank; a refusal on rank 0 is raised on every rank."""
    args = (spec, out, adapter, shape, count, seed)
    clips, error = None, None
    if dist.is_main():
        try:
            clips = load_real_clips(*args, progress=progress, trained=trained)
        except AccVideoError as exc:
            error = str(exc)
    error = dist.broadcast_object(error)
    if error is not None:
        raise AccVideoError(error)
    return clips or load_real_clips(*args, progress=False)
