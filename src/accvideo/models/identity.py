"""A teacher's identity: a content hash of its pipeline folder (configs and weights), never of its path."""

from __future__ import annotations

import hashlib
from pathlib import Path

from accvideo.errors import AccVideoError

_CHUNK = 1 << 24


def teacher_identity(model_dir: str | Path) -> str:
    """'sha256:<hex>' over every file of a pipeline folder (configs, tokenizer, weights), by relative path.

    Content only, never paths or times: the same teacher copied elsewhere keeps its identity.
    """
    root = Path(model_dir)
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise AccVideoError(f"teacher folder {root} holds no files; pass --teacher a diffusers pipeline folder")
    digest = hashlib.sha256()
    for path in files:
        rel = path.relative_to(root).as_posix().encode()
        digest.update(len(rel).to_bytes(8, "little") + rel + path.stat().st_size.to_bytes(8, "little"))
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
