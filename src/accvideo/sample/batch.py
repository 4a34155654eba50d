"""`accvideo sample --prompts FILE --out DIR`: one clip a prompt, the model loaded once, resumable.

DIR holds 000000.mp4, 000001.mp4, ... (the clip of prompt row i; `.gif` beside each with --gif), `manifest.jsonl`
(one line a clip: file, prompt, seed, and image) and `sample.yaml` (the resolved settings): the folder format
`accvideo evaluate --videos DIR` reads (evaluate/folder.py). Each clip is sampled from its row's own seed (the
row's, else item_seed(seed, row) as synthesize draws them), so `--batch` changes no clip beyond float rounding, and
a clip equals `accvideo sample --prompt P --seed S` of its row.

A clip is written whole under a temporary name and renamed into place, and the manifest lists it only after that,
so a run stopped at any point (Ctrl-C, a crash, a full disk) keeps every listed clip; the rerun samples only the
rows not listed. It keeps a listed clip only when its row is unchanged (prompt, seed, image bytes) and the settings
that make the clips (model, steps, sigmas, guidance, negative prompt, size, fps, dtype, decoder) are those of
`sample.yaml`; other settings are refused with one line naming the first that differs.

A listed clip's bytes are hashed again at a resume only when its file changed since they were hashed: the hidden
`.accvideo-checked.jsonl` holds each hashed clip's stat (size, mtime, ctime, inode: core/files.stat_witness), so a
resume over 100k clips of several MB reads none of them (it read all, hundreds of GB, every time). Damage below
the file system (a disk's bit rot) is what this no longer notices; a clip replaced, edited, truncated or touched is
hashed and, when changed, sampled again as before.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import yaml

from accvideo.core import dist
from accvideo.core.config import to_dict
from accvideo.core.files import file_sha256, remove_stale_temps, stat_witness, write_text_atomic
from accvideo.core.images import load_images
from accvideo.core.inputs import object_lines, read_small_file
from accvideo.core.interrupts import check as check_interrupt
from accvideo.core.outputs import FolderLock, check_folder, claim_folder
from accvideo.core.progress import progress_bar
from accvideo.core.runtime import BUILTIN_MODELS, resolve_device, resolve_model
from accvideo.core.sampling import encode_negative
from accvideo.core.video import CLIP_NAME, MANIFESTS, video_name, write_manifest, write_video
from accvideo.errors import AccVideoError
from accvideo.models.decoder import RANDOM, find_decoder
from accvideo.models.identity import sampled_identity, teacher_identity
from accvideo.models.open import model_family, model_folder
from accvideo.models.student import student_identity
from accvideo.sample.config import SampleConfig
from accvideo.synthesize.prompts import Item, read_prompts
from accvideo.world import warn_unknown_words

COMMAND = "sample"
MANIFEST = MANIFESTS[0]
SETTINGS = "sample.yaml"
# The manifest key holding the sha256 of a row's file of key k ("file" -> "sha256", "gif" -> "gif_sha256").
_SHA = {"file": "sha256", "gif": "gif_sha256"}
MAX_MANIFEST = 1 << 30  # a million rows are ~200 MB
CHECKED = ".accvideo-checked.jsonl"  # {file, sha256, stat} of each clip as it was hashed (see above)


def sample_prompts(cfg: SampleConfig, progress: bool = True) -> dict:
    """One clip per row of cfg.prompts into the folder cfg.out; returns what was done and the resolved settings.

    Under torchrun each rank loads the model on its own device and samples its share of every round of
    world x batch rows; rank 0 keeps the folder (claim, lock, settings, manifest)."""
    device = dist.local_device(resolve_device(cfg.device))
    locks: list = []  # rank 0: the folder's FolderLock while this run writes
    try:
        with dist.distributed(device):
            return _sample_prompts(replace(cfg, device=str(device)), progress, locks)
    finally:
        for lock in locks:
            lock.release()


def _sample_prompts(cfg: SampleConfig, progress: bool, locks: list) -> dict:
    from accvideo.sample.run import open_for_sampling  # run.py dispatches here: imported late, no cycle

    dist.check_agree(to_dict(cfg))  # the nodes of a launch each parse their own command line
    out = Path(cfg.out).expanduser()
    prompts = read_prompts(cfg.prompts, cfg.seed)  # a missing, empty or malformed file: one line, nothing made
    inputs = {"model": resolve_model(cfg.model)}
    check_folder(out, COMMAND, inputs=inputs)  # before any weight is read; made only once the model is open
    prompts.check_images(bool(getattr(model_family(cfg.model), "image_conditioned", False)), cfg.prompts)
    main = dist.is_main()
    o = open_for_sampling(cfg, prompts.has_images, f'"image" rows in {cfg.prompts}', progress and main)
    cfg = o.cfg
    one_clip = ("prompt", "image", "device")  # the single-clip settings, unused here; the device is each rank's
    settings = {k: v for k, v in to_dict(cfg).items() if k not in one_clip}
    settings.update(o.resolved())
    settings["device"] = f"{o.device.type} x {dist.world_size()}" if dist.world_size() > 1 else str(o.device)
    items = prompts.items
    wanted = {it.index: _entry(it, cfg.gif) for it in items}

    def prepare() -> dict[int, dict]:  # rank 0 alone
        settings["made_with"] = _made_with(cfg, o)
        claim_folder(out, COMMAND, inputs=inputs)
        locks.append(FolderLock(out, COMMAND))  # one writer at a time: two would sample the same rows
        return _prepare(out, wanted, settings)

    done = dist.from_main(prepare)  # the kept rows' manifest lines (with their clips' sha256)
    dist.check_shared_folder(out)
    todo = [it for it in items if it.index not in done]
    if progress and main:
        if done:
            print(f"{len(done)} of {len(items)} clips are already in {out}; sampling the other {len(todo)}", flush=True)
        resized = prompts.resized(cfg.height, cfg.width, among=todo)  # not the kept rows' images
        if resized:
            print(resized, flush=True)
    if cfg.model in BUILTIN_MODELS and main:  # the built-in teachers only know their world's words
        warn_unknown_words([it.prompt for it in todo])
    t0 = time.perf_counter()
    _sample_todo(cfg, o, todo, out, wanted, done, progress and main, total=len(items))
    seconds = time.perf_counter() - t0
    if main:
        settings.update(seconds_load=round(o.seconds_load, 3), seconds_generate=round(seconds, 3))
        write_text_atomic(out / SETTINGS, yaml.safe_dump(settings, sort_keys=False))
    return {
        **o.resolved(),
        "rank": dist.rank(),
        "out": str(out),
        "clips": len(items),
        "sampled": len(todo),
        "kept": len(items) - len(todo),
        "seconds_load": round(o.seconds_load, 3),
        "seconds_generate": round(seconds, 3),
    }


def _made_with(cfg: SampleConfig, o) -> dict:
    """The settings that make the clips: a rerun adds to a folder only clips made the same way. The model's weights
    count by their identity (models/identity.py): the teacher's, a student's own (a run distilled again at the same
    path is another student) and a --decoder's. Where the model and the run lie is not what they are (a moved model
    resumes); the device is not either, though CPUs and GPUs round differently."""
    made_with = {
        **o.model.describe(),
        "model_identity": teacher_identity(model_folder(cfg.model)),
        **({"student_identity": student_identity(o.model.student_dir, o.model.student)} if o.model.student_dir else {}),
        **({"decoder_identity": sampled_identity(find_decoder(cfg.runtime.decoder))} if _decoder_folder(cfg) else {}),
        **o.plan.describe(),
        "negative_prompt": o.plan.negative_prompt,
        "size": [cfg.frames, cfg.height, cfg.width],
        "fps": cfg.fps,
        "gif": cfg.gif,
        "dtype": str(o.dtype).removeprefix("torch."),
        # a decoder folder counts by its decoder_identity above, not by how its path is spelled or where it lies
        "decoder": "weights" if _decoder_folder(cfg) else cfg.runtime.decoder,
    }
    for path in ("model_dir", "student_dir"):
        made_with.pop(path, None)
    return made_with


def _decoder_folder(cfg: SampleConfig) -> bool:
    """Whether --decoder names a folder of trained weights (not `tiny`, a random one for timing)."""
    return cfg.runtime.decoder is not None and cfg.runtime.decoder != RANDOM


def _prepare(out: Path, wanted: dict[int, dict], settings: dict) -> dict[int, dict]:
    """Rank 0, before any clip is written: clear what a killed run left, refuse other settings, keep the listed
    clips of unchanged rows, remove those of rows the file no longer has; the lines of the rows already done."""
    remove_stale_temps(out)  # what a killed run left half-written (never a live writer's)
    listed = _listed(out)
    _check_settings(out, settings["made_with"], bool(listed))
    names = _names(wanted)
    # clips of rows the prompt file no longer has (a shorter or edited file): only names of this command's own
    # convention, never another file an edited manifest names (notes.txt, the folder's marker)
    removed = sorted(
        {e[k] for e in listed for k in _SHA if isinstance(e.get(k), str) and CLIP_NAME.fullmatch(e[k])} - names
    )
    for name in sorted(names) + removed:  # checked before anything changes: a folder there is not a clip
        if (out / name).exists() and not (out / name).is_file():
            raise AccVideoError(f"{out / name} is not a clip file (a folder?); remove it and run again")
    by_file = {e.get("file"): e for e in listed}
    checked, witnessed = _read_checked(out), []
    done = {  # a kept line names its row's image where the prompt file puts it now
        i: {**by_file[e["file"]], **({"image": e["image"]} if "image" in e else {})}
        for i, e in wanted.items()
        if _kept(out, by_file.get(e["file"]), e, checked, witnessed)
    }
    # before any clip is replaced: the manifest never lists one being rewritten
    write_manifest(out, (done[i] for i in sorted(done)))
    text = "".join(json.dumps(w) + "\n" for w in witnessed)  # O(rows) a start, written only when it changes
    if text != _checked_text(out):
        write_text_atomic(out / CHECKED, text)
    for name in removed:
        (out / name).unlink(missing_ok=True)
    write_text_atomic(out / SETTINGS, yaml.safe_dump(settings, sort_keys=False))
    return {i: done[i] for i in sorted(done)}


def _sample_todo(cfg, o, todo: list[Item], out: Path, wanted: dict, done: dict, progress: bool, total: int) -> None:
    """Sample the rows of `todo` in rounds of world x batch: each rank its own `batch` of each round, then rank 0
    lists the round's clips in the manifest (every clip is in place before it is listed)."""
    from accvideo.sample.run import generate_clips  # run.py dispatches here: imported late, no cycle

    adapter = o.model.adapter
    uncond = encode_negative(adapter, o.plan) if todo else None  # one row, shared by every batch
    world, me = dist.world_size(), dist.rank()
    per_round = world * cfg.batch
    bar = progress_bar(total=total, initial=len(done), desc="sample", unit="clip", show=progress)
    for start in range(0, len(todo), per_round):
        chunk = todo[start + me * cfg.batch : start + (me + 1) * cfg.batch]  # empty on ranks past the end
        if chunk:
            images = None
            if chunk[0].image is not None:
                images, _ = load_images([it.image for it in chunk], cfg.height, cfg.width)
            videos = generate_clips(
                adapter,
                [it.prompt for it in chunk],
                [it.seed for it in chunk],
                o.plan,
                frames=cfg.frames,
                height=cfg.height,
                width=cfg.width,
                images=images,
                uncond=uncond,
            )
            for it, video in zip(chunk, videos, strict=True):
                for k in ("file", "gif"):
                    if k in wanted[it.index]:
                        write_video(out / wanted[it.index][k], video, cfg.fps)
        finished = [i for part in dist.gather_objects([it.index for it in chunk]) for i in part]
        if dist.is_main():  # rank 0 lists each clip with the sha256 of the bytes in place: a resume keeps only those
            witnessed: list[dict] = []
            done.update((i, _with_sha(out, wanted[i], witnessed)) for i in finished)
            _append_manifest(out, [done[i] for i in finished])
            _append_lines(out / CHECKED, witnessed, sync=False)  # advice: a lost line means one clip hashed again
        bar.update(len(finished))
        check_interrupt()  # a swallowed Ctrl-C stops here; the rerun samples only the rows not listed
    bar.close()
    if dist.is_main() and todo:
        write_manifest(out, (done[i] for i in sorted(done)))  # in row order


def _entry(item: Item, gif: bool) -> dict:
    """The manifest line of `item`'s clip."""
    entry = {"file": video_name(item.index), "prompt": item.prompt, "seed": item.seed}
    if gif:
        entry["gif"] = video_name(item.index, ".gif")
    if item.image is not None:
        entry.update(image=item.image, image_sha256=item.image_sha256)
    return entry


def _check_settings(out: Path, made_with: dict, lists_clips: bool) -> None:
    """Refuse to add clips made another way to those `out` holds: one line naming the first setting that differs."""
    path = out / SETTINGS
    try:
        before = yaml.safe_load(read_small_file(path).decode("utf-8")) or {}
    except FileNotFoundError:
        if lists_clips:
            # Listed clips with no record of how they were made (sample.yaml is written before any clip, so it was
            # deleted): refused, not resampled, because resampling would overwrite clips that may be the only copy
            # of another model's or setting's work; the user chooses another --out or deletes the folder.
            raise AccVideoError(
                f"{out} lists clips but has no {SETTINGS} saying how they were made; use another --out, or delete "
                f"{out} to sample them again"
            ) from None
        return
    except ValueError as exc:  # a FIFO, a folder, a device: never waited on
        raise AccVideoError(f"{path} {exc}; remove it, or delete {out} to sample again") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise AccVideoError(f"cannot read {path} ({exc}); delete {out} to sample again") from None
    old = before.get("made_with") if isinstance(before, dict) else None
    if not isinstance(old, dict):
        raise AccVideoError(f"{out / SETTINGS} holds no made_with settings; delete {out} to sample again")
    for key in [*made_with, *(k for k in old if k not in made_with)]:  # steps before sigmas
        if key == "decoder" and "decoder_identity" in old and "decoder_identity" in made_with:
            continue  # a decoder folder is its weights (compared as decoder_identity); older records hold its path
        if old.get(key) != made_with.get(key):
            raise AccVideoError(
                f"{out} holds clips made with {key} {_short(old.get(key))}, and this run's is "
                f"{_short(made_with.get(key))}; use another --out, or delete {out} to sample them again"
            )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _append_manifest(out: Path, entries: list[dict]) -> None:
    """List a round's clips (all in place): appended, so a run of N rows writes the manifest O(N) bytes, not O(N^2)."""
    _append_lines(out / MANIFEST, entries)


def _append_lines(path: Path, entries: list[dict], sync: bool = True) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(e) + "\n" for e in entries))
        if sync:
            f.flush()
            os.fsync(f.fileno())


def _checked_text(out: Path) -> str:
    try:
        return read_small_file(out / CHECKED, MAX_MANIFEST).decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return ""


def _read_checked(out: Path) -> dict[str, list]:
    """File -> [sha256, stat] of the clips hashed before (none when the record is absent or unreadable)."""
    text = _checked_text(out)
    return {w["file"]: [w.get("sha256"), w.get("stat")] for w in object_lines(text) if isinstance(w.get("file"), str)}


def _listed(out: Path) -> list[dict]:
    """The JSON-object lines of out's manifest (a half-appended last line lists nothing); an absent one lists nothing,
    and one that is not a regular file (a FIFO, a folder) is one line naming it, never waited on."""
    path = out / MANIFEST
    try:
        text = read_small_file(path, MAX_MANIFEST).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise AccVideoError(f"{path} {exc}; remove it and run again") from None
    except OSError as exc:
        raise AccVideoError(f"cannot read {path} ({exc.strerror}); remove it and run again") from None
    return object_lines(text)


def _kept(
    out: Path, listed: dict | None, entry: dict, checked: dict | None = None, witnessed: list | None = None
) -> bool:
    """Whether the listed line of `entry`'s row keeps its clip: the same row, and each file in place with the sha256
    the line records (a line of an older manifest without one: the file only has to be there). A file whose stat is
    the one `checked` recorded with that sha256 is not read again; each file found whole is added to `witnessed`."""
    if listed is None or _row(listed) != _row(entry):
        return False
    found = []
    for k, sha in _SHA.items():
        if k in entry:
            path = out / entry[k]
            if not path.is_file():
                return False
            if sha in listed:
                witness = stat_witness(path)
                if (checked or {}).get(entry[k]) != [listed[sha], witness] and listed[sha] != file_sha256(path):
                    return False
                found.append({"file": entry[k], "sha256": listed[sha], "stat": witness})
    if witnessed is not None:
        witnessed.extend(found)
    return True


def _row(entry: dict) -> dict:
    """What makes a line's clip: its row without the clips' digests, and without the image's path where the image's
    bytes are recorded (an image moved with the same bytes makes the same clip)."""
    hashed = "image_sha256" in entry
    return {k: v for k, v in entry.items() if k not in _SHA.values() and not (hashed and k == "image")}


def _with_sha(out: Path, entry: dict, witnessed: list | None = None) -> dict:
    """`entry` with the sha256 of each of its files as written (and, in `witnessed`, each file's stat taken before
    it was read: a file changed while it was hashed has another stat, so it is hashed again at the next resume)."""
    result = dict(entry)
    for k, sha in _SHA.items():
        if k in entry:
            witness = stat_witness(out / entry[k])
            result[sha] = file_sha256(out / entry[k])
            if witnessed is not None:
                witnessed.append({"file": entry[k], "sha256": result[sha], "stat": witness})
    return result


def _names(entries: dict[int, dict]) -> set[str]:
    return {e[k] for e in entries.values() for k in ("file", "gif") if k in e}
