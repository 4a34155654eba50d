"""A teacher's identity: a digest of what defines its weights, read in milliseconds whatever the folder's size.

`teacher_identity` hashes, file by file (relative path and size always; hidden files skipped):
- small files (configs, tokenizers, schedulers: up to SMALL_BYTES) whole;
- safetensors files: the whole header (tensor names, dtypes, shapes, offsets, metadata) plus SAMPLES blocks of
  BLOCK bytes spread evenly over the data, first and last bytes included;
- any other large file: its size plus the same sampled blocks.
About 1 MiB is read per weights file, so a 14B teacher (tens of GB) is identified in well under a second, once per
command (rank 0 broadcasts it under torchrun).

It protects against using a dataset or a student with another teacher: another family, architecture, config,
scheduler, tokenizer, dtype, tensor layout, a truncated or swapped file, and a fine-tune or re-save of the same
architecture (training changes nearly every weight, so every sampled block differs). It does not protect against
an edit confined to the bytes between the samples (one tensor changed by hand, a flipped bit): it is an identity,
not an integrity check. `content_sha256` (every byte) is the identity accvideo recorded before this one; artifacts
that carry it are still checked with it (`teacher_identity(..., like=recorded)`), so they stay usable.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from accvideo.core.files import visible_files
from accvideo.errors import AccVideoError

PREFIX = "id2:"  # the sampled identity
LEGACY_PREFIX = "sha256:"  # every byte (accvideo before the sampled identity)
SMALL_BYTES = 16 << 20  # files up to this size are hashed whole
SAMPLES = 16
BLOCK = 64 << 10
_CHUNK = 1 << 24


def _files(root: Path) -> list[Path]:
    files = visible_files(root)
    if not files:
        raise AccVideoError(
            f"model folder {root} holds no files; pass a diffusers pipeline folder (--model, --teacher)"
        )
    return files


def _sampled(f, start: int, end: int, digest) -> None:
    """SAMPLES blocks of BLOCK bytes spread evenly over [start, end), the first and the last included."""
    span = end - start
    if span <= SAMPLES * BLOCK:
        f.seek(start)
        digest.update(f.read(span))
        return
    step = (span - BLOCK) / (SAMPLES - 1)
    for i in range(SAMPLES):
        f.seek(start + round(i * step))
        digest.update(f.read(BLOCK))


def _safetensors_data_start(f, size: int) -> int | None:
    """Offset of a safetensors file's data (after its header), or None when the file has no sane header."""
    head = f.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    return 8 + n if 8 + n <= size else None


def sampled_identity(model_dir: str | Path) -> str:
    """'id2:<hex>' over every file's relative path, size, and its bytes (small files) or header and samples; a file
    (not a folder) by its name and the same."""
    root = Path(model_dir)
    digest = hashlib.sha256()
    for path in [root] if root.is_file() else _files(root):
        _add_file(digest, path, (path.name if path == root else path.relative_to(root).as_posix()).encode())
    return f"{PREFIX}{digest.hexdigest()}"


def _add_file(digest, path: Path, rel: bytes) -> None:
    size = path.stat().st_size
    digest.update(len(rel).to_bytes(8, "little") + rel + size.to_bytes(8, "little"))
    with path.open("rb") as f:
        if size <= SMALL_BYTES:
            digest.update(f.read())
            return
        start = _safetensors_data_start(f, size) if path.suffix == ".safetensors" else None
        if start is not None:
            f.seek(0)
            digest.update(f.read(start))  # the header: names, dtypes, shapes, offsets
        _sampled(f, start or 0, size, digest)


def content_sha256(model_dir: str | Path) -> str:
    """'sha256:<hex>' over every byte of every file, by relative path (slow: the identity of older artifacts)."""
    root = Path(model_dir)
    digest = hashlib.sha256()
    for path in _files(root):
        rel = path.relative_to(root).as_posix().encode()
        digest.update(len(rel).to_bytes(8, "little") + rel + path.stat().st_size.to_bytes(8, "little"))
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    return f"{LEGACY_PREFIX}{digest.hexdigest()}"


def teacher_identity(model_dir: str | Path, like: str | None = None) -> str:
    """The teacher's identity; in the scheme of `like` (an identity an artifact recorded), so an artifact made before
    the sampled identity (a 'sha256:' one) is compared with the full hash it recorded. Content only, never paths or
    times: the same teacher copied elsewhere keeps its identity."""
    if like is not None and like.startswith(LEGACY_PREFIX):
        return content_sha256(model_dir)
    return sampled_identity(model_dir)
