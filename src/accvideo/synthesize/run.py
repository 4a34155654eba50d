"""`accvideo synthesize`: teacher rollouts to SynVid shards, resumable, split over torchrun ranks (docs/method.md 1)."""

from __future__ import annotations

import errno
import json
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from accvideo.core import dist
from accvideo.core.adapter import check_decoded
from accvideo.core.config import save_config, to_dict
from accvideo.core.files import check_free_space, size_text, write_text_atomic
from accvideo.core.images import encode_conditioning, load_images
from accvideo.core.progress import progress_bar
from accvideo.core.runtime import resolve_device, resolve_dtype, resolve_model
from accvideo.core.sampling import SamplingPlan, encode_negative, sample_latents, shifted_plan
from accvideo.core.video import write_video
from accvideo.errors import AccVideoError
from accvideo.models import adapter_class, load_adapter, size_multiple_of
from accvideo.models.defaults import check_form, fill_video, settings_line
from accvideo.models.identity import teacher_identity
from accvideo.models.runtime import apply_runtime
from accvideo.synthesize.config import SynthConfig, SynVidSettings
from accvideo.synthesize.layout import (
    MANIFEST,
    VIDEO_MANIFEST,
    VIDEOS,
    another_dataset,
    check_output,
    is_complete,
    other_teacher,
    owned_shards,
    prepare_folder,
    shard_count,
    shard_items,
    video_name,
)
from accvideo.synthesize.prompts import Item, read_prompts
from accvideo.synthesize.shards import HeaderCache, ShardHeader, list_shards, read_header, shard_path, write_shard

Reader = Callable[[Path], ShardHeader]  # how the start reads a shard's header (HeaderCache.read: once each)


def dataset_settings(cfg: SynthConfig, adapter, identity: str, plan: SamplingPlan, dtype) -> SynVidSettings:
    """The settings every shard of this run records (and a resumed run must match)."""
    return SynVidSettings(
        teacher=identity,
        family=adapter.family,
        steps=plan.steps,
        shift=float(plan.shift),
        key_indices=cfg.indices,
        guidance=float(plan.guidance),
        negative_prompt=plan.negative_prompt,
        frames=cfg.frames,
        height=cfg.height,
        width=cfg.width,
        latent_shape=tuple(adapter.latent_shape(cfg.frames, cfg.height, cfg.width)),
        store=cfg.store,
        dtype=str(dtype).removeprefix("torch."),
        shard_size=cfg.shard_size,
        guidance_2=None if plan.boundary_ratio is None else float(plan.guidance_2),
        boundary_ratio=plan.boundary_ratio,
    )


def latent_bytes(settings: SynVidSettings, items: int) -> int:
    """At least what `items` items take on disk: their float32 key latents (text conditioning adds a little)."""
    return items * len(settings.latent_indices) * math.prod(settings.latent_shape) * 4


def _check_disk(root: Path, settings: SynVidSettings, items: list, shard_size: int, store: str, read: Reader) -> None:
    """Refuse before the first rollout a SynVid whose items left cannot fit on the disk: the latents alone of the
    shards still to sample, so a refusal is never wrong (at 480x832x81, 6 key latents are 50 MB an item; --store
    all, 51 of them, 430 MB)."""
    left = sum(
        len(chunk)
        for k in range(shard_count(len(items), shard_size))
        if not is_complete(root, k, chunk := shard_items(items, k, shard_size), False, read)
    )
    check_free_space(
        root,
        latent_bytes(settings, left),
        f"the SynVid's {left:,} item(s) left ({size_text(latent_bytes(settings, 1))} of latents each)",
        "free space, choose an --out on a larger disk, or synthesize fewer prompts"
        + (" (or --store key: the m+1 key latents only)" if store == "all" else ""),
    )


def _check_size(cfg: SynthConfig, family, model_dir: Path | None = None, source: str | None = None) -> None:
    """Frames and size against the model's form: its class and folder (before loading) or the loaded adapter;
    `source` says where the values the command did not give came from."""
    multiple = family.size_multiple if model_dir is None else size_multiple_of(family, model_dir)
    check_form(cfg, family.frame_step, multiple, source)


def recorded_identity(root: Path, read: Reader = read_header) -> str | None:
    """The teacher identity the folder's first readable shard records (None: no shard yet)."""
    for path in list_shards(root):
        try:
            return read(path).settings.teacher
        except AccVideoError:
            continue
    return None


def _refuse_another_teacher(root: Path, model_dir: Path, read: Reader) -> None:
    """Refuse, before any weight is read (minutes at real size), a folder whose shards another teacher made; the
    check after loading (prepare_folder) would refuse it with these words. Rank 0 reads, every rank raises."""

    def check() -> None:
        for path in list_shards(root):  # the first readable shard: prepare_folder checks them all
            try:
                recorded = read(path).settings.teacher
            except AccVideoError:
                continue
            ours = teacher_identity(model_dir, like=recorded)
            if ours != recorded:
                raise another_dataset(root, other_teacher(path.name, recorded, ours))
            return

    dist.from_main(check)


def _prepare_on_rank0(cfg, root, model_dir, adapter, plan, dtype, items, blank_lines, locks, read) -> tuple[str, int]:
    """Rank 0 identifies the teacher, locks and checks the folder (its lock appended to `locks`); every rank gets
    (identity, removed) or the error. `read`: the start's HeaderCache.read (each header read once)."""

    def prepare() -> tuple[str, int]:
        # in the scheme the folder's shards recorded, so a dataset made before the sampled identity still resumes
        identity = teacher_identity(model_dir, like=recorded_identity(root, read))
        settings = dataset_settings(cfg, adapter, identity, plan, dtype)
        _check_disk(root, settings, items, cfg.shard_size, cfg.store, read)  # before the folder is even made
        removed = prepare_folder(root, settings, items, cfg.shard_size, cfg.overwrite, model_dir, locks, read)
        shards = range(shard_count(len(items), cfg.shard_size))
        if (
            not removed  # shards removed (an --overwrite over a longer prompt file): the manifest's `items` is stale
            and (root / MANIFEST).is_file()
            and all(is_complete(root, k, shard_items(items, k, cfg.shard_size), cfg.videos, read) for k in shards)
        ):
            return identity, removed  # nothing to write: the manifest stays the one of the run that made the shards
        try:  # the resolved run, for people; readers need only the shards
            save_config(
                cfg,
                root / MANIFEST,
                settings=settings.to_dict(),
                items=len(items),
                blank_lines=blank_lines,
                world_size=dist.world_size(),
                teacher_dir=str(Path(model_dir).resolve()),  # where `teacher` was read, whatever the working folder
            )
        except OSError as exc:
            raise AccVideoError(f"cannot write to {root} ({exc.strerror}); choose another --out") from None
        return identity, removed

    return dist.from_main(prepare)


def _synthesize_shard(cfg, adapter, settings, plan, uncond, chunk: list[Item], root: Path, bar) -> tuple:
    """Every item of one shard, in fixed batches: (N latents (K, ...), cond {name: N tensors}, item dicts), each a
    view of its batch's tensor: the shard is held once, never concatenated or copied (`--store all`: 51 latents)."""
    lat, conds, rows = [], {}, []
    for b in range(0, len(chunk), cfg.batch):
        part = chunk[b : b + cfg.batch]
        images = load_images([it.image for it in part], cfg.height, cfg.width)[0] if adapter.image_conditioned else None
        cond = encode_conditioning(adapter, [it.prompt for it in part], images, cfg.frames, cfg.height, cfg.width)
        seeds = [it.seed for it in part]
        latents = sample_latents(
            adapter, cond, seeds, settings.latent_shape, plan, uncond=uncond, keep=settings.latent_indices
        ).kept
        lat.extend(latents.cpu().unbind())
        for name, value in cond.items():
            conds.setdefault(name, []).extend(value.cpu().unbind())
        for j, it in enumerate(part):
            row = {"index": it.index, "prompt": it.prompt, "seed": it.seed}
            if it.image is not None:
                row["image"], row["image_sha256"] = it.image, it.image_sha256
            if cfg.videos:  # written before the shard, so a complete shard implies its videos exist
                (root / VIDEOS).mkdir(exist_ok=True)
                decoded = adapter.decode(latents[j : j + 1, -1].to(adapter.device))
                video = check_decoded(adapter, decoded, 1, cfg.frames, cfg.height, cfg.width)[0]
                write_video(root / video_name(it.index), video, cfg.fps)
                row["video"] = video_name(it.index)
            rows.append(row)
        bar.update(len(part))
    return lat, conds, rows


def _add_videos(cfg, adapter, root: Path, k: int, bar) -> None:
    """Decode the videos of a complete shard made without them from its own clean latents (the very tensors the
    teacher's run would decode: nothing is sampled again), then write the shard again listing them; its tensors
    are unchanged, so it is the shard a run with --videos from the start writes."""
    from safetensors import safe_open

    header = read_header(shard_path(root, k))
    with safe_open(str(header.path), framework="pt") as f:
        latents = [f.get_tensor(f"{j}/latents") for j in range(len(header.items))]
        cond = {c: [f.get_tensor(f"{j}/cond/{c}") for j in range(len(header.items))] for c in header.cond_keys}
    (root / VIDEOS).mkdir(exist_ok=True)
    rows = []
    for j, item in enumerate(header.items):
        made = header.settings
        decoded = adapter.decode(latents[j][-1:].to(adapter.device))
        video = check_decoded(adapter, decoded, 1, made.frames, made.height, made.width)[0]
        write_video(root / video_name(item["index"]), video, cfg.fps)
        rows.append({**item, "video": video_name(item["index"])})
        bar.update(1)
    write_shard(root, k, header.settings, rows, latents, cond, header.batch)


def _listed_videos(root: Path, k: int) -> set[str]:
    path = shard_path(root, k)
    return {it["video"] for it in read_header(path).items if "video" in it} if path.is_file() else set()


def _drop_stale_videos(root: Path, stale: set[str], rows: list[dict]) -> None:
    for name in stale - {r.get("video") for r in rows}:
        (root / name).unlink(missing_ok=True)


def write_video_manifest(root: Path) -> None:
    """OUT/videos/manifest.jsonl: each clip's file, prompt and seed, in item order, so `accvideo evaluate --videos
    OUT/videos` scores the teacher's own clips; written only when it changes (a rerun with nothing to do keeps it)."""
    rows = [
        {"file": Path(item["video"]).name, "prompt": item["prompt"], "seed": item["seed"]}
        for path in list_shards(root)
        for item in read_header(path).items
        if "video" in item
    ]
    path = root / VIDEOS / VIDEO_MANIFEST
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if not rows:
        path.unlink(missing_ok=True)
    elif not path.is_file() or path.read_text() != text:
        write_text_atomic(path, text)


def synthesize(cfg: SynthConfig, *, progress: bool = True, adapter=None) -> dict:
    """Write the SynVid dataset of cfg.prompts into cfg.out, skipping complete shards; this rank's summary.

    Under torchrun each rank writes the shards k with k % world == rank. `adapter` may be a teacher
    already loaded from cfg.teacher (benchmarks); by default it is loaded here.
    """
    device = dist.local_device(resolve_device(cfg.device))
    locks: list = []  # rank 0: the folder's FolderLock while this run writes
    try:
        with dist.distributed(device):
            return _synthesize(cfg, device, progress, adapter, locks)
    finally:
        for lock in locks:
            lock.release()


def _synthesize(cfg: SynthConfig, device, progress: bool, adapter, locks: list) -> dict:
    t0 = time.perf_counter()
    dist.check_agree(to_dict(cfg))  # the nodes of a launch each parse their own command line
    prompts = read_prompts(cfg.prompts, cfg.seed)
    items = list(prompts.items)
    model_dir = resolve_model(cfg.teacher)
    family = adapter_class(model_dir)  # validates the folder before any weight is read
    prompts.check_images(family.image_conditioned, cfg.prompts)  # an image per item for I2V, none for T2V
    cfg, source = fill_video(cfg, model_dir, family.family)  # the teacher's size and negative prompt
    _check_size(cfg, family, model_dir, source)
    root = Path(cfg.out).expanduser()
    check_output(root, model_dir)  # before any weight is read; rank 0 claims it below
    dtype = resolve_dtype(cfg.dtype, device)
    headers = HeaderCache()  # every header the start reads, read once (dropped once the work is known)
    if not cfg.overwrite:
        _refuse_another_teacher(root, model_dir, headers.read)
    if adapter is None:
        adapter = apply_runtime(load_adapter(model_dir, device=device, dtype=dtype), cfg.runtime, model_dir)
    dtype = adapter.dtype
    _check_size(cfg, adapter, source=source)
    # the teacher's grid and guidance (None: the family's own; Wan: CFG 5, HunyuanVideo: embedded only)
    plan = shifted_plan(adapter, cfg.steps, cfg.guidance, cfg.shift, cfg.negative_prompt, cfg.guidance_2)
    cfg = replace(cfg, guidance=plan.guidance, guidance_2=plan.guidance_2)  # the manifest records the guidance used
    if progress:
        dist.print0(settings_line(cfg, plan, source), flush=True)
        resized = prompts.resized(cfg.height, cfg.width)
        if resized is not None:
            dist.print0(resized, flush=True)
    blank = prompts.blank_lines
    identity, removed = _prepare_on_rank0(cfg, root, model_dir, adapter, plan, dtype, items, blank, locks, headers.read)
    dist.check_shared_folder(root)
    settings = dataset_settings(cfg, adapter, identity, plan, dtype)

    num_shards = shard_count(len(items), cfg.shard_size)
    mine = owned_shards(num_shards, dist.rank(), dist.world_size())
    read, size = headers.read, cfg.shard_size
    todo = [k for k in mine if not is_complete(root, k, shard_items(items, k, size), cfg.videos, read)]
    # complete but made without --videos: decoded from the shard's own clean latents, not sampled again
    decode_only = [k for k in todo if cfg.videos and is_complete(root, k, shard_items(items, k, size), False, read)]
    del headers, read  # the run holds no header of a shard it does not write
    skip = set(decode_only)  # a set: a list made this O(shards^2)
    todo = [k for k in todo if k not in skip]
    total = sum(len(shard_items(items, k, cfg.shard_size)) for k in mine)
    left = sum(len(shard_items(items, k, cfg.shard_size)) for k in todo)
    decoded = sum(len(shard_items(items, k, cfg.shard_size)) for k in decode_only)
    uncond = encode_negative(adapter, plan)  # one row, shared by every batch
    bar = progress_bar(
        total=total,
        initial=total - left - decoded,
        unit="item",
        desc="synthesize",
        dynamic_ncols=True,
        show=progress and dist.is_main(),
    )
    t1 = time.perf_counter()
    written = 0
    try:
        for k in decode_only:
            _add_videos(cfg, adapter, root, k, bar)
        for k in todo:
            chunk = list(shard_items(items, k, cfg.shard_size))
            stale = _listed_videos(root, k)  # a shorter shard k is redone when the prompt file grew
            try:  # a full disk or a lost mount: keep what is complete, say how to go on
                latents, cond, rows = _synthesize_shard(cfg, adapter, settings, plan, uncond, chunk, root, bar)
                write_shard(root, k, settings, rows, latents, cond, cfg.batch)
            except OSError as exc:
                if not root.is_dir():  # deleted or unmounted under the run: nothing of it is kept
                    raise AccVideoError(
                        f"{root} disappeared while synthesize wrote shard {k}; rerun the same command to start over"
                    ) from None
                kept = written + len(mine) - len(todo)
                fix = "fix the cause"
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    shard = size_text(latent_bytes(settings, len(chunk)))
                    fix = f"free about {shard} a shard (or choose another --out)"
                elif exc.errno == errno.EFBIG:  # a clip (--videos) or a shard past ulimit -f or the largest file
                    fix = "raise the file-size limit (ulimit -f) or choose an --out on another file system"
                raise AccVideoError(
                    f"could not write shard {k} to {root} ({exc.strerror or exc}); the {kept} complete shard(s) "
                    f"of this process are kept: {fix} and rerun the same command to resume"
                ) from None
            written += 1
            _drop_stale_videos(root, stale, rows)
    finally:
        bar.close()
    dist.barrier()  # every rank's shards are written
    if dist.is_main() and (root / VIDEOS).is_dir():  # also without --videos: a redone shard drops its clips
        write_video_manifest(root)
    t2 = time.perf_counter()
    return {
        "out": str(root),
        "teacher": identity,
        "items": len(items),
        "blank_lines": prompts.blank_lines,
        "shards": num_shards,
        "rank": dist.rank(),
        "world_size": dist.world_size(),
        "shards_written": written,
        "shards_skipped": len(mine) - len(todo),
        "shards_removed": removed,
        "items_written": left,
        "shards_given_videos": len(decode_only),
        "key_indices": list(settings.key_indices),
        "shift": settings.shift,
        "store": cfg.store,
        "device": str(device),
        "dtype": settings.dtype,
        "seconds_generate": round(t2 - t1, 3),
        "seconds_total": round(t2 - t0, 3),
    }
