"""Small files written whole or not at all: a temporary name in the same folder, then a rename."""

from __future__ import annotations

import json
import os
from pathlib import Path

from accvideo.errors import AccVideoError


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` so a reader (or a run killed midway) never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json_atomic(path: str | Path, data, indent: int = 1) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def prepare_output(out: str | Path) -> Path:
    """Create the output's folder (one-line error if impossible) and check it is writable."""
    out = Path(out).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AccVideoError(
            f"cannot create output folder {out.parent} ({exc.strerror}); choose another --out"
        ) from None
    if not os.access(out.parent, os.W_OK):
        raise AccVideoError(f"output folder {out.parent} is not writable; choose another --out")
    return out
