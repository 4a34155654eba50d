"""The input guard: files accvideo reads are opened through checks that turn any parse or integrity failure into
one line naming the file, what is wrong with it, and the fix (AccVideoError, exit code 2).

Safetensors files are checked from their header alone (a truncated or garbled file is caught before a loader sees
it, in microseconds whatever the file's size); JSON and YAML are parsed here; a model folder is checked whole.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
from pathlib import Path

import yaml

from accvideo.errors import AccVideoError

_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header
MAX_TEXT = 64 << 20  # a JSON or YAML file accvideo reads (a config, an index, a manifest) is far smaller
# bits per element of every dtype a safetensors header may name
DTYPE_BITS = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}


def _bad(path: Path, what: str, fix: str) -> AccVideoError:
    return AccVideoError(f"{path} {what}; {fix}")


def not_regular(path: Path) -> str | None:
    """What `path` is when it exists and is no regular file (nor a link to one): a FIFO (reading it waited for a
    writer forever), a device (a link to /dev/zero filled memory), a socket or a folder; None otherwise."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # absent or unreadable: the reader says so
    return None if stat.S_ISREG(mode) else _kind_of(mode)


MAX_SMALL_FILE = 4 << 20  # a marker or a run's record is a few KB: a larger file is none accvideo wrote


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device or socket"


def read_small_file(path: str | Path, limit: int = MAX_SMALL_FILE) -> bytes:
    """The bytes of `path` when it is a regular file (or a link to one) of at most `limit` bytes. OSError when it is
    absent or unreadable; ValueError saying what it is else: reading a FIFO waited for a writer forever, a link to
    /dev/zero filled memory, a folder raised IsADirectoryError. Opened without blocking, then checked."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO opens at once: no writer waited for
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ValueError(f"is {_kind_of(mode)}, not a file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"is larger than {limit >> 20} MB")
    return data


def _read_text(path: Path, fix: str) -> str:
    """The text of a regular file of at most MAX_TEXT bytes, or one line naming the file, what is wrong and `fix`."""
    try:
        return read_small_file(path, MAX_TEXT).decode()
    except FileNotFoundError:
        raise _bad(path, "does not exist", fix) from None
    except OSError as exc:
        raise _bad(path, f"cannot be read ({exc.strerror})", fix) from None
    except UnicodeDecodeError:
        raise _bad(path, "is not a text file", fix) from None
    except ValueError as exc:  # a FIFO, a device, a folder, or far too large
        raise _bad(path, str(exc), fix) from None


def parse_json(text: str | bytes, **kw):
    """json.loads, with a text nested past Python's recursion limit (`[[[[...`) refused as invalid JSON: the
    decoder's RecursionError passed every reader's JSONDecodeError handler and ended in a traceback."""
    try:
        return json.loads(text, **kw)
    except RecursionError:
        doc = text if isinstance(text, str) else text.decode("utf-8", "replace")
        raise json.JSONDecodeError("nested too deeply", doc, 0) from None


def object_lines(text: str) -> list[dict]:
    """The JSON objects of a JSON-lines text, one a line; a line that is no object (the last, half-appended when its
    writer was killed) lists nothing."""
    entries = []
    for line in text.splitlines():
        try:
            entry = parse_json(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


class KeyGivenTwice(Exception):
    """A JSON object giving a key twice (its args[0]: the key), raised by `keys_once`."""


def keys_once(pairs: list[tuple[str, object]]) -> dict:
    """An object_pairs_hook for parse_json: objects whose keys are each given once (json keeps the last of two,
    silently)."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        raise KeyGivenTwice(next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i])))
    return obj


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


_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
# Numbers are decimal, as a flag reads them: YAML 1.1 read `seed: 010` as 8 (octal), `iterations: 1:30` as 90 and
# `lr: 1:30.5` as 90.5 (base 60), `steps: 0x2` as 2, where `--seed 010` is 10 and `--steps 0x2` is refused. Other
# forms stay text, which a setting typed as a number refuses in one line.
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_Loader.add_constructor(_INT, lambda loader, node: int(loader.construct_scalar(node), 10))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml_text(text: str):
    """YAML text parsed by the safe loader with YAML 1.2's booleans and decimal integers (see `_Loader`)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)


def read_yaml(path: str | Path, fix: str):
    """The parsed YAML file (safe loader, YAML 1.2 booleans, decimal integers), or one line naming the file, the
    line and `fix`."""
    path = Path(path)
    try:
        return load_yaml_text(_read_text(path, fix))
    except _DuplicateKey as exc:
        raise _bad(path, f"{exc}; keep one of them", fix) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise _bad(path, f"is not valid YAML{at}", fix) from None


class _DamagedHeader(ValueError):
    """What is wrong with one entry of a safetensors header."""


def is_int(value) -> bool:
    """An int read from JSON or YAML, not a bool (True is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """An int or float read from JSON or YAML, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value) -> bool:
    return is_int(value) and value >= 0


def _given(entry: dict, key: str) -> str:
    """`key` and its value as the header gives it ('shape "abc"'), or 'no key'."""
    return f"{key} {json.dumps(entry[key])[:80]}" if key in entry else f"no {key}"


def _numel(shape: list[int]) -> int:
    """The element count of `shape`, stopped past 2^64 (no file holds more: a shape of a million huge sizes is no
    product worth computing)."""
    if 0 in shape:
        return 0
    numel = 1
    for n in shape:
        numel *= n
        if numel > 1 << 64:
            break
    return numel


def _check_entry(name: str, entry) -> int:
    """The end offset of one tensor entry whose dtype is known, shape a list of sizes, and offsets span exactly
    shape x dtype bytes; else _DamagedHeader saying what is wrong."""
    if not isinstance(entry, dict):
        raise _DamagedHeader(f"tensor {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise _DamagedHeader(f"tensor {name!r} has {_given(entry, 'dtype')}, no safetensors dtype")
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
        raise _DamagedHeader(f"tensor {name!r} has {_given(entry, 'shape')}, not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(n) for n in offsets)):
        raise _DamagedHeader(f"tensor {name!r} has {_given(entry, 'data_offsets')}, not [begin, end]")
    begin, end = offsets
    bits = _numel(shape) * DTYPE_BITS[dtype]
    if end - begin != -(-bits // 8):
        raise _DamagedHeader(
            f"tensor {name!r} of shape {shape} in {dtype} takes {-(-bits // 8)} bytes but its data_offsets span "
            f"{end - begin}"
        )
    return end


def _read_header(path: Path, fix: str) -> tuple[int, int, object]:
    """(file size, header length, parsed header) of a regular file; one line when it is truncated or no JSON."""
    kind = not_regular(path)
    if kind is not None:
        raise _bad(path, f"is {kind}, not a safetensors file", fix)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _bad(path, f"is truncated ({size} bytes, no safetensors header)", fix)
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or 8 + n > size:
                raise _bad(path, f"is truncated or not a safetensors file (header of {n} bytes, file {size})", fix)
            return size, n, parse_json(f.read(n), object_pairs_hook=keys_once)  # a tensor named twice: damaged
    except OSError as exc:
        raise _bad(path, f"cannot be read ({exc.strerror})", fix) from None
    except KeyGivenTwice as exc:
        raise _bad(path, f"has a damaged safetensors header ({exc.args[0]!r} is given twice)", fix) from None
    except _DamagedHeader as exc:
        raise _bad(path, f"has a damaged safetensors header ({exc})", fix) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _bad(path, "has a damaged safetensors header", fix) from None


def check_safetensors(path: str | Path, fix: str) -> dict:
    """The header of a safetensors file whose size matches it (not truncated, not padded), every tensor's dtype
    known and its shape x dtype size the span of its data_offsets, or one line."""
    path = Path(path)
    size, n, header = _read_header(path, fix)
    if not isinstance(header, dict):
        raise _bad(path, "has a damaged safetensors header", fix)
    try:
        ends = [_check_entry(k, v) for k, v in header.items() if k != "__metadata__"]
    except _DamagedHeader as exc:
        raise _bad(path, f"has a damaged safetensors header ({exc})", fix) from None
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
    """Every JSON config and safetensors file of a pipeline folder parses and is whole, and every file is a regular
    file (a FIFO or a link to a device is refused; hidden files skipped)."""
    root = Path(folder)
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        kind = not_regular(path)
        if kind is not None and kind != "a folder":  # a reader of it waited forever (FIFO) or filled memory
            raise _bad(path, f"is {kind}, not a regular file", fix)
        if not path.is_file():
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


def env_int(name: str, default: str, low: int, what: str, high: int | None = None) -> int:
    """An integer environment variable torchrun sets, in [low, high]; one line for any other value (int() raised
    a traceback, torch's rendezvous another)."""
    value = os.environ.get(name, default)
    text = value.strip()
    number = int(text) if text.isascii() and text.isdigit() else None  # '²' is a digit to isdigit, not to int()
    if number is None or number < low or (high is not None and number > high):
        raise AccVideoError(f"{name}={value!r} is not {what}; launch with torchrun, or unset WORLD_SIZE")
    return number


def first_non_finite(tensors) -> str | None:
    """The name of the first floating-point tensor of (name, tensor) pairs that holds a NaN or infinite value, None
    when every one is finite (weights a diverged run saved: students, classifiers)."""
    for name, t in tensors:
        if t.is_floating_point() and not bool(t.isfinite().all()):
            return name
    return None
