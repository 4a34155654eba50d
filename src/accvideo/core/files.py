"""Small files written whole or not at all: a temporary name in the same folder, then a rename."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` so a reader (or a run killed midway) never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json_atomic(path: str | Path, data, indent: int = 1) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n")
