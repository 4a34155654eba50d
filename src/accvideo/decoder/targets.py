"""The decoder's training pairs: latents and the teacher VAE's own decodes of them (frames and inner features).

Inputs are SynVid's final latents l[t'_0] (the latents a sampler hands to the decoder) and, with `--videos`, real
clips encoded by the teacher's VAE (distill/reals.py, cached in OUT/reals). Each chunk of items is decoded once by
the VAE and cached in OUT/targets/chunk-NNNNN.safetensors (written under a temporary name, then renamed), so an
interrupted run resumes without decoding again; training reads items from the chunks lazily, so the cache never
needs to fit in memory.

The matched features are the VAE decoder's up-block outputs (`vae.decoder.up_blocks`, as both diffusers families
name them), gathered over its per-frame calls: the last one at the clip's full frame count and below its full size,
matched to the tiny decoder's stage at the same resolution (Wan 2.1: up block 1, 4x the latent size).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch

from accvideo.core.files import temp_name
from accvideo.core.progress import progress_bar
from accvideo.core.tensorfile import write_safetensors
from accvideo.errors import AccVideoError
from accvideo.synthesize.shards import item_tensor_names

CHUNK = 16  # items per cached chunk
FOLDER = "targets"


def up_blocks(vae) -> list[torch.nn.Module]:
    decoder = getattr(vae, "decoder", None)
    return list(getattr(decoder, "up_blocks", None) or [])


@torch.no_grad()
def teacher_decode(adapter, latents: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The VAE's frames (B, F, 3, H, W) in [-1, 1] and each up block's output (B, C, F_j, h_j, w_j)."""
    calls: dict[int, list[torch.Tensor]] = {}
    hooks = [
        block.register_forward_hook(lambda _m, _i, out, j=j: calls.setdefault(j, []).append(out.float().cpu()))
        for j, block in enumerate(up_blocks(adapter.vae))
    ]
    try:
        video = adapter.decode(latents)  # (B, F, H, W, 3) in [0, 1]
    finally:
        for h in hooks:
            h.remove()
    feats = [torch.cat(calls[j], 2) for j in sorted(calls)]
    return (video.permute(0, 1, 4, 2, 3) * 2 - 1).float(), feats


def feature_level(feats: list[torch.Tensor], frames: int, height: int, latent_height: int) -> tuple[int, int] | None:
    """(up block j, tiny-decoder stage) whose features are matched: the last up block at the full frame count
    below the full size, at 2**stage times the latent size; None when no up block qualifies."""
    level = None
    for j, f in enumerate(feats):
        ratio = f.shape[3] / latent_height
        if f.shape[2] == frames and f.shape[3] < height and ratio >= 1 and math.log2(ratio).is_integer():
            level = (j, int(math.log2(ratio)))
    return level


class Targets:
    """Items i: {"latents" (C, F', H', W'), "video" (F, 3, H, W) in [-1, 1], "features" (F, C_t, h, w) or absent},
    read lazily from the cached chunks."""

    def __init__(self, folder: Path, count: int, level: tuple[int, int] | None):
        self.folder, self.count, self.level = Path(folder), count, level
        self._files: dict[int, object] = {}

    def __len__(self) -> int:
        return self.count

    def _open(self, c: int):
        from safetensors import safe_open

        if c not in self._files:
            self._files[c] = safe_open(str(self.folder / chunk_name(c)), "pt")
        return self._files[c]

    @property
    def shapes(self) -> dict[str, list[int]]:
        """Each tensor's per-item shape: latents (C, F', H', W'), video (F, 3, H, W), features (F, C_t, h, w)."""
        f = self._open(0)
        return {name: f.get_slice(name).get_shape()[1:] for name in f.keys()}

    def get(self, indices, features: bool = True, frames: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """A batch of items stacked (float32); with `frames` (B, k), item b's frames frames[b] of the video and
        features only, read as such (runs of consecutive frames are single reads)."""
        rows: dict[str, list[torch.Tensor]] = {"latents": [], "video": []}
        if features and self.level is not None:
            rows["features"] = []
        for b, i in enumerate(indices):
            f, j = self._open(int(i) // CHUNK), int(i) % CHUNK
            for name, out in rows.items():
                if frames is None or name == "latents":
                    out.append(f.get_slice(name)[j : j + 1])
                else:
                    part = f.get_slice(name)
                    out.append(torch.cat([part[j : j + 1, a:e] for a, e in runs(frames[b].tolist())], 1))
        return {name: torch.cat(out).float() for name, out in rows.items()}


def runs(frames: list[int]) -> list[tuple[int, int]]:
    """[start, end) spans of consecutive indices, in order: [3, 4, 9, 10, 5] -> [(3, 5), (9, 11), (5, 6)]."""
    spans: list[list[int]] = []
    for x in frames:
        if spans and x == spans[-1][1]:
            spans[-1][1] = x + 1
        else:
            spans.append([x, x + 1])
    return [(a, e) for a, e in spans]


def chunk_name(c: int) -> str:
    return f"chunk-{c:05d}.safetensors"


def build_targets(
    adapter,
    latents_of: Callable[[range], torch.Tensor],
    count: int,
    out: Path,
    progress: bool = True,
    sources_of: Callable[[range], list[str | None]] | None = None,
) -> Targets:
    """Decode items 0..count-1 (`latents_of(range)` -> (n, C, F', H', W')) with the VAE into OUT/targets, chunk by
    chunk (a kept chunk is reused when it holds exactly these latents), and return the reader.

    `sources_of(range)`: a digest of what each item's latents are made from (None: none known), recorded in the
    chunk; a kept chunk whose every item has one is checked by them, without `latents_of` (a resume read every
    SynVid item whole to compare its latents). Chunks with an item without one (real clips), or made before
    digests were recorded, are checked by their latents, as before."""
    folder = Path(out) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    level = None
    starts = range(0, count, CHUNK)
    for start in progress_bar(starts, desc="teacher VAE decodes", unit="chunk", show=progress, transient=True):
        path = folder / chunk_name(start // CHUNK)
        rows = range(start, min(count, start + CHUNK))
        sources = sources_of(rows) if sources_of is not None else None
        if sources is not None and None not in sources and path.is_file():
            kept, kept_level = _kept_by_sources(path, adapter, sources)
            if kept:
                level = kept_level
                continue
        z = latents_of(rows).float()
        kept, kept_level = _kept(path, adapter, z) if path.is_file() else (False, None)
        if kept:
            level = kept_level
            continue
        video, feats = teacher_decode(adapter, z)
        found = feature_level(feats, video.shape[1], video.shape[3], z.shape[3])
        level = found
        tensors = {"latents": z.cpu().contiguous(), "video": video.half().contiguous()}
        if found is not None:
            tensors["features"] = feats[found[0]].transpose(1, 2).half().contiguous()  # (n, F, C, h, w)
        meta = {"items": str(len(z)), "level": "" if found is None else f"{found[0]},{found[1]}"}
        if sources is not None:
            meta["sources"] = json.dumps(sources)
        tmp = temp_name(path)
        try:
            write_safetensors(tensors, meta, tmp)  # deterministic bytes
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return Targets(folder, count, level)


def _kept(path: Path, adapter, z: torch.Tensor) -> tuple[bool, tuple[int, int] | None]:
    """(True, its feature level) when the cached chunk at `path` decoded these very latents `z` (the inputs may have
    changed: a re-encoded real clip) and holds the video, and the features its level names, at the shapes `z` decodes
    to (read from its header); (False, None) else, and the chunk is decoded again (a damaged one too)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            level = _level_of(meta)
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
            fits = int(meta.get("items", -1)) == len(z) and _fits(shapes, _target_shapes(adapter, z.shape, level))
            same = fits and torch.equal(f.get_tensor("latents"), z.cpu())
    except Exception:  # noqa: BLE001 - a damaged chunk is decoded again
        return False, None
    return (True, level) if same else (False, None)


def _kept_by_sources(path: Path, adapter, sources: list[str]) -> tuple[bool, tuple[int, int] | None]:
    """(True, its feature level) when the cached chunk at `path` records these very `sources` (the digests of what
    its latents were made from) and holds the video, and the features its level names, at the shapes its latents
    decode to: its header alone is read, no tensor. (False, None) else: the caller checks it by its latents."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            level = _level_of(meta)
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
        same = json.loads(meta.get("sources", "null")) == sources and int(meta.get("items", -1)) == len(sources)
        fits = same and shapes.get("latents", (None,))[0] == len(sources)
        fits = fits and _fits(shapes, _target_shapes(adapter, shapes["latents"], level))
    except Exception:  # noqa: BLE001 - a damaged chunk: the caller's check by latents decides
        return False, None
    return (True, level) if fits else (False, None)


def _target_shapes(adapter, shape: tuple[int, ...], level: tuple[int, int] | None) -> dict[str, tuple[int | None, ...]]:
    """The shape of each tensor a chunk of latents of `shape` (n, C, F', H', W') holds (None: any size): the latents,
    the VAE's video (n, F, 3, H, W) and, at a feature level (j, stage), its features (n, F, C_t, H' * 2**stage, ...)."""
    n, _, lf, lh, lw = shape
    frames, s = 1 + adapter.temporal_factor * (lf - 1), adapter.spatial_factor
    want = {"latents": tuple(shape), "video": (n, frames, 3, lh * s, lw * s)}
    if level is not None:
        want["features"] = (n, frames, None, lh << level[1], lw << level[1])
    return want


def _fits(shapes: dict[str, tuple[int, ...]], want: dict[str, tuple[int | None, ...]]) -> bool:
    """Whether a chunk holds exactly the tensors `want` names, each of its shape (None: any size)."""
    if set(shapes) != set(want):
        return False
    return all(
        len(shapes[k]) == len(w) and all(b is None or a == b for a, b in zip(shapes[k], w, strict=True))
        for k, w in want.items()
    )


def _level_of(meta: dict) -> tuple[int, int] | None:
    text = meta.get("level", "")
    if not text:
        return None
    j, stage = (int(x) for x in text.split(","))
    return j, stage


def _check_final(dataset) -> None:
    if float(dataset.key_sigmas[-1]) != 0.0:
        raise AccVideoError(f"{dataset.root} has no latents at sigma 0; synthesize with the default key steps")


def synvid_final_latents(dataset, rows: list[int]) -> torch.Tensor:
    """l[t'_0] of SynVid items `rows`: the stored key latent at sigma 0 (B, C, F', H', W')."""
    _check_final(dataset)
    return torch.stack([dataset[int(i)]["latents"][-1] for i in rows])


def synvid_sources(dataset) -> list[str]:
    """What each SynVid item's l[t'_0] is made from, read from the shard headers (no tensor): the sha256 of the
    item's stored latents, of which l[t'_0] is the last."""
    _check_final(dataset)
    place = {it["index"]: (h, j) for h in dataset.headers for j, it in enumerate(h.items)}
    sources = []
    for i in range(len(dataset)):
        header, j = place[dataset.record(i)["index"]]
        sources.append(f"synvid-latents:{header.sha256[item_tensor_names(j, header.cond_keys)[0]]}")
    return sources
