"""The input guard: files accvideo reads are opened through checks that turn any parse or integrity failure into
one line naming the file, what is wrong with it, and the fix (AccVideoError, exit code 2).

Safetensors files are checked from their header alone (a truncated or garbled file is caught before a loader sees
it, in microseconds whatever the file's size); JSON and YAML are parsed here; a model folder is checked whole.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import yaml

from accvideo.errors import AccVideoError

_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


def _bad(path: Path, what: str, fix: str) -> AccVideoError:
    return AccVideoError(f"{path} {what}; {fix}")


def _read_text(path: Path, fix: str) -> str:
    """The file's text, or one line naming the file, what is wrong and `fix`."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise _bad(path, "does not exist", fix) from None
    except OSError as exc:
        raise _bad(path, f"cannot be read ({exc.strerror})", fix) from None
    except UnicodeDecodeError:
        raise _bad(path, "is not a text file", fix) from None


def parse_json(text: str | bytes, **kw):
    """json.loads, with a text nested past Python's recursion limit (`[[[[...`) refused as invalid JSON: the
    decoder's RecursionError passed every reader's JSONDecodeError handler and ended in a traceback."""
    try:
        return json.loads(text, **kw)
    except RecursionError:
        doc = text if isinstance(text, str) else text.decode("utf-8", "replace")
        raise json.JSONDecodeError("nested too deeply", doc, 0) from None


def read_json(path: str | Path, fix: str):
    """The parsed JSON file, or one line naming the file and `fix`."""
    path = Path(path)
    try:
        return parse_json(_read_text(path, fix))
    except json.JSONDecodeError as exc:
        raise _bad(path, f"is not valid JSON (line {exc.lineno}: {exc.msg})", fix) from None


class _Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2's booleans: only true / false. YAML 1.1 also reads on, off, yes, no, y and n
    as booleans, so `mixed_precision: off` arrived as False; settings typed bool still take those words."""

    def construct_mapping(self, node, deep=False):
        """A mapping whose keys are each given once: a key given twice (`steps: 2` ... `steps: 50`) was read as the
        last one, silently; merged keys (`<<: *base`) may still be overridden."""
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise _DuplicateKey(key, seen[key], key_node.start_mark.line + 1)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first: int, second: int):
        super().__init__(f"sets {key!r} twice (lines {first} and {second})")


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def read_yaml(path: str | Path, fix: str):
    """The parsed YAML file (safe loader, YAML 1.2 booleans), or one line naming the file, the line and `fix`."""
    path = Path(path)
    try:
        return yaml.load(_read_text(path, fix), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except _DuplicateKey as exc:
        raise _bad(path, f"{exc}; keep one of them", fix) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise _bad(path, f"is not valid YAML{at}", fix) from None


def check_safetensors(path: str | Path, fix: str) -> dict:
    """The header of a safetensors file whose size matches it (not truncated, not padded), or one line."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _bad(path, f"is truncated ({size} bytes, no safetensors header)", fix)
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or 8 + n > size:
                raise _bad(path, f"is truncated or not a safetensors file (header of {n} bytes, file {size})", fix)
            header = parse_json(f.read(n))
    except OSError as exc:
        raise _bad(path, f"cannot be read ({exc.strerror})", fix) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _bad(path, "has a damaged safetensors header", fix) from None
    if not isinstance(header, dict):
        raise _bad(path, "has a damaged safetensors header", fix)
    try:
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (KeyError, TypeError, ValueError, IndexError):
        raise _bad(path, "has a damaged safetensors header", fix) from None
    need = 8 + n + max(ends, default=0)
    if size != need:
        what = "is truncated" if size < need else "has trailing bytes"
        raise _bad(path, f"{what} ({size} bytes, its header says {need})", fix)
    return header


def load_safetensors(path: str | Path, fix: str) -> dict:
    """All tensors of a checked safetensors file (CPU), or one line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors(path, fix)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _bad(Path(path), f"is not a readable safetensors file ({str(exc).splitlines()[0]})", fix) from None


def check_model_folder(folder: str | Path, fix: str) -> None:
    """Every JSON config and safetensors file of a pipeline folder parses and is whole (hidden files skipped)."""
    root = Path(folder)
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts) or not path.is_file():
            continue
        if path.suffix == ".json":
            data = read_json(path, fix)
            if path.name == "config.json" and not isinstance(data, dict):
                raise _bad(path, "must hold a JSON object", fix)
        elif path.suffix == ".safetensors":
            check_safetensors(path, fix)
    for config in sorted(root.glob("*/config.json")):  # a model component (schedulers and tokenizers have none)
        weights = (f for pattern in ("*.safetensors", "*.bin", "*.pt", "*.pth") for f in config.parent.glob(pattern))
        if next(weights, None) is None:
            raise _bad(config.parent, "holds a config.json but no weights file (an interrupted download?)", fix)
