"""Reading SynVid: a random-access torch Dataset over shards, safe in DataLoader workers (docs/method.md 1-2)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import torch
from safetensors import safe_open
from torch.utils.data import Dataset

from accvideo.core.inputs import read_small_file
from accvideo.core.outputs import check_not_being_written, owner
from accvideo.core.runtime import BUILTIN_MODELS
from accvideo.errors import AccVideoError
from accvideo.synthesize.config import SynVidSettings
from accvideo.synthesize.identity import tensor_sha256
from accvideo.synthesize.layout import MANIFEST
from accvideo.synthesize.shards import ShardHeader, item_tensor_names, list_shards, read_header

SIGMA_TOLERANCE = 1e-6


def build_index(root: str | Path) -> list[ShardHeader]:
    """The dataset index, derived from the complete shards alone (their headers; no tensor is read)."""
    return [read_header(p) for p in list_shards(root)]


def _settings(root: Path, headers: list[ShardHeader]) -> SynVidSettings:
    if not headers:
        made_by = owner(root)
        if made_by not in (None, "synthesize") or (root / "model_index.json").is_file():  # not one to synthesize into
            what = f"the output of `accvideo {made_by}`" if made_by else "a model folder"
            raise AccVideoError(f"{root} is {what}, not a SynVid; pass the --out of `accvideo synthesize`")
        raise AccVideoError(f"{root} holds no SynVid shards; make them with `accvideo synthesize --out {root}`")
    first = headers[0]
    for h in headers[1:]:
        diff = h.settings.difference(first.settings)
        if diff:
            raise AccVideoError(
                f"{root} mixes datasets: {h.path.name} and {first.path.name} differ in {diff}; "
                "keep one run's shards per folder"
            )
    return first.settings


def _key_rows(settings: SynVidSettings, key_sigmas: Sequence[float] | None) -> torch.Tensor:
    """Rows of each item's stored latents that hold the asked key steps (the dataset's own when None)."""
    stored = settings.sigmas[list(settings.latent_indices)]
    if key_sigmas is None:
        return torch.tensor([settings.latent_indices.index(i) for i in settings.key_indices])
    try:  # the trainer's order, t'_m = 1 > ... > t'_0 = 0, as the CLI's key_sigmas= (a rising list served clean first)
        asked = [] if isinstance(key_sigmas, str) else [float(s) for s in key_sigmas]
    except (TypeError, ValueError):
        asked = []
    if len(asked) < 2 or any(not a > b for a, b in zip(asked, asked[1:], strict=False)):
        raise AccVideoError(
            "key_sigmas must be a list of at least 2 numbers falling strictly from 1 to 0 (e.g. [1.0, 0.5, 0.0]); "
            f"got {key_sigmas!r}"
        )
    rows = []
    for s in key_sigmas:
        hit = torch.nonzero((stored - float(s)).abs() <= SIGMA_TOLERANCE).flatten()
        if len(hit) == 0:
            have = [round(float(x), 6) for x in settings.sigmas[list(settings.key_indices)]]
            want = [round(float(x), 6) for x in key_sigmas]
            raise AccVideoError(
                f"the dataset's key steps are sigma {have} (steps {settings.steps}, key indices "
                f"{list(settings.key_indices)}, shift {settings.shift}) but the trainer asks for {want}; "
                "synthesize with the trainer's --steps/--key-steps/--shift, or train with the dataset's key steps"
            )
        rows.append(int(hit[0]))
    return torch.tensor(rows)


def _recorded(root: Path, key: str):
    """A value synthesize recorded in the folder's synvid.yaml as it started; None when it does not say. The file is
    advice (readers need only the shards): one that is no small regular file (a FIFO waited for a writer forever,
    a link to /dev/zero filled memory) or does not parse says nothing."""
    import yaml

    try:
        return yaml.safe_load(read_small_file(root / MANIFEST)).get(key)
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None


def _same_folder(a: str, b: str | Path) -> bool:
    """Whether two spellings name one folder (never a built-in model's name: no folder of the user's)."""
    if a in BUILTIN_MODELS or str(b) in BUILTIN_MODELS:
        return False
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def _recorded_items(root: Path) -> int:
    """The item count synthesize recorded as it started; 0 when it does not say."""
    items = _recorded(root, "items")
    return items if isinstance(items, int) and not isinstance(items, bool) and items > 0 else 0


class SynVidDataset(Dataset):
    """Items {"latents" (m+1, C, F', H', W') noisiest first, "sigmas" (m+1,), "cond" {name: (L, D)}, "prompt",
    "seed", "index"} (+ "image" for image-to-video), in prompt-list order.

    Refuses a dataset made by another `teacher` (identity string) or without the asked `key_sigmas`
    (t'_m = 1 > ... > t'_0 = 0); a whole-trajectory dataset serves any key steps on its grid. Files are
    opened lazily in each process, so DataLoader workers each open their own. With `verify`, a shard's
    layout and sigma grid are checked when it is first opened, and every item's tensors against their
    sha256 when first read.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        teacher: str | None = None,
        key_sigmas: Sequence[float] | None = None,
        verify: bool = True,
    ):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise AccVideoError(f"dataset folder {self.root} does not exist; pass the --out of `accvideo synthesize`")
        check_not_being_written(self.root)  # a synthesize still writing it: its items so far only, silently
        self.headers = build_index(self.root)
        self.settings = _settings(self.root, self.headers)
        if teacher is not None:
            self.check_teacher(teacher)
        self.rows = _key_rows(self.settings, key_sigmas)
        self.key_sigmas = self.settings.sigmas[list(self.settings.latent_indices)][self.rows].float()
        where = sorted((it["index"], s, j) for s, h in enumerate(self.headers) for j, it in enumerate(h.items))
        for (i, s, _), (k, t, _) in zip(where, where[1:], strict=False):
            if i == k:
                a, b = self.headers[s].path.name, self.headers[t].path.name
                where_ = f"in {a} and in {b}" if a != b else f"in {a}"
                raise AccVideoError(
                    f"{self.root} holds item {i} twice ({where_}); delete a shard that is a copy (one synthesize "
                    "run's shards per folder), or rerun synthesize there with --overwrite"
                )
        self._where = [(s, j) for _, s, j in where]
        # item indices absent below the last (a shard gone or unwritten) or past it (a synthesize that stopped early:
        # synvid.yaml, written as it starts, holds the prompt list's length)
        self.missing = max(where[-1][0] + 1, _recorded_items(self.root)) - len(where)
        self.verify = verify
        self._reset()

    def missing_line(self) -> str | None:
        """One line when items are absent below the last one (the dataset still trains on what it holds)."""
        if not self.missing:
            return None
        return (
            f"{self.root} lacks {self.missing} of items 0..{len(self) + self.missing - 1} (a shard deleted, or a "
            f"synthesize that did not finish): training on the {len(self)} it holds; rerun the same `accvideo "
            "synthesize` to complete it (a run resumes only on the dataset it started on)"
        )

    @functools.cached_property
    def identity(self) -> str:
        """'syn1:<hex>': what the dataset holds, from its shard headers alone (no tensor is read): its settings, its
        items' (index, prompt, seed, image) and every tensor's sha256. Not its path, nor how items are grouped into
        shards. A resumed distill checks it trained on this very dataset (the folder may move, not change)."""
        digest = hashlib.sha256()
        settings = {f.name: getattr(self.settings, f.name) for f in fields(self.settings) if f.name != "shard_size"}
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
        for key in sorted(k for h in self.headers for k in h.keys):
            digest.update(json.dumps(key).encode())
        for sha in sorted(v for h in self.headers for v in h.sha256.values()):
            digest.update(sha.encode())
        return f"syn1:{digest.hexdigest()}"

    def check_teacher(self, teacher: str, folder: str | Path | None = None) -> None:
        """Refuse a dataset made by another teacher (identity string, models/identity.py); `folder`: where that
        teacher was read, for the fix."""
        if not isinstance(teacher, str) or ":" not in teacher:  # a folder or 'builtin': told to pass what it passed
            raise AccVideoError(
                f"teacher={teacher!r} is no teacher identity; pass teacher_identity(FOLDER) "
                "(accvideo.models.identity), not the folder or its name"
            )
        if teacher != self.settings.teacher:
            given, then = _recorded(self.root, "teacher"), ""
            # where synthesize read it: the folder it resolved (recorded since), else the path given when absolute (a
            # relative one names a folder only from where synthesize ran)
            placed = isinstance(given, str) and given not in BUILTIN_MODELS and Path(given).expanduser().is_absolute()
            read_at = _recorded(self.root, "teacher_dir")
            read_at = read_at if isinstance(read_at, str) else given if placed else None
            if read_at is not None and folder is not None and _same_folder(read_at, folder):  # changed in place
                raise AccVideoError(
                    f"{self.root} was made by teacher {self.settings.teacher[:19]}..., and {folder}, the folder it "
                    f"was made from, now holds another ({teacher[:19]}...: a file in it added, removed or changed "
                    "since, a note or README included); restore the folder as it was, or synthesize a dataset with "
                    "this teacher"
                )
            if isinstance(given, str) and not placed and read_at is None and given not in BUILTIN_MODELS:
                # an older dataset's relative path: which folder it named is not known here
                then = (
                    f"pass --teacher {given} as synthesize was given it, from the folder it ran in (if that is "
                    f"{folder or 'the folder given'}, its files changed since: restore them), or "
                )
            elif isinstance(given, str) and (not placed or Path(given).expanduser().is_dir()):
                then = f"pass --teacher {given} (the folder synthesize was given), or "
            elif isinstance(given, str):  # moved since: naming it would send the user to nothing
                then = f"pass the teacher synthesize was given ({given}, gone from there) where it is now, or "
            raise AccVideoError(
                f"{self.root} was made by teacher {self.settings.teacher[:19]}..., not by this trainer's teacher "
                f"{teacher[:19]}...; {then}synthesize a dataset with this teacher"
            )

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._files: dict[int, object] = {}
        self._verified: set[tuple[int, int]] = set()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()  # open files do not travel to DataLoader workers
        state.update(_files={}, _verified=set(), _pid=None)
        return state

    def __len__(self) -> int:
        return len(self._where)

    def record(self, i: int) -> dict:
        """Item i's stored description: index, prompt, seed (and its video path when there is one)."""
        s, j = self._where[i]
        return dict(self.headers[s].items[j])

    def _check_file(self, s: int, f) -> None:
        """A shard's layout and sigma grid agree with its metadata."""
        h = self.headers[s]
        if set(f.keys()) != set(h.sha256):
            raise AccVideoError(f"{h.path} lacks tensors its metadata lists; delete it and rerun synthesize")
        if not torch.equal(f.get_tensor("sigmas"), self.settings.sigmas):
            raise AccVideoError(f"{h.path} has another sigma grid than its settings; delete it and rerun synthesize")

    def _open(self, s: int):
        if self._pid != os.getpid():  # a forked worker: never share a parent's file handles
            self._reset()
        if s not in self._files:
            try:
                f = safe_open(str(self.headers[s].path), framework="pt")
            except OSError as exc:  # removed or replaced under this reader (`synthesize --overwrite`)
                raise AccVideoError(
                    f"{self.headers[s].path} is gone ({exc.strerror}): the dataset changed while this command read "
                    "it; rerun once `accvideo synthesize` has finished it"
                ) from None
            if self.verify:
                self._check_file(s, f)
            self._files[s] = f
        return self._files[s]

    def _item(self, i: int, check: bool) -> dict:
        s, j = self._where[i]
        h = self.headers[s]
        f = self._open(s)
        tensors = {name: f.get_tensor(name) for name in item_tensor_names(j, h.cond_keys)}
        if check and (s, j) not in self._verified:
            for name, t in tensors.items():
                if tensor_sha256(t) != h.sha256.get(name):
                    raise AccVideoError(
                        f"{h.path}: tensor {name} fails its sha256 check (the file is damaged); rerun the "
                        "synthesize command with --overwrite to regenerate that shard"
                    )
                if t.is_floating_point() and not torch.isfinite(t).all():  # intact, but no trajectory to learn from
                    raise AccVideoError(
                        f"{h.path}: tensor {name} holds NaN or infinite values (its digest matches: it was written "
                        "so); delete that shard and rerun the synthesize command to make it again"
                    )
            self._verified.add((s, j))
        item = h.items[j]
        return {
            "latents": tensors[f"{j}/latents"][self.rows],
            "sigmas": self.key_sigmas.clone(),
            "cond": {k: tensors[f"{j}/cond/{k}"] for k in h.cond_keys},
            "prompt": item["prompt"],
            "seed": item["seed"],
            "index": item["index"],
            **({"image": item["image"]} if "image" in item else {}),  # image-to-video: the path it was made from
        }

    def __getitem__(self, i: int) -> dict:
        return self._item(i, self.verify)

    def verify_all(self) -> int:
        """Check every item of every shard now; returns the number of items checked."""
        for s in range(len(self.headers)):
            self._check_file(s, self._open(s))
        for i in range(len(self)):
            self._item(i, check=True)
        return len(self)
