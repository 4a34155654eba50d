"""safetensors files written deterministically: equal tensors and metadata give equal bytes, whichever process."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

from accvideo.errors import AccVideoError

_UMASK = os.umask(0o22)
os.umask(_UMASK)  # reading the umask means setting it; put it straight back
FILE_MODE = 0o666 & ~_UMASK


# safetensors' dtype names and their order in its format (a file lists its widest dtypes first)
_DTYPES = {
    torch.bool: ("BOOL", 0),
    torch.uint8: ("U8", 4),
    torch.int8: ("I8", 5),
    torch.int16: ("I16", 9),
    torch.float16: ("F16", 11),
    torch.bfloat16: ("BF16", 12),
    torch.int32: ("I32", 13),
    torch.float32: ("F32", 15),
    torch.float64: ("F64", 16),
    torch.int64: ("I64", 17),
}


def _bytes(t: torch.Tensor) -> memoryview:
    """A tensor's bytes without a copy (a copy of this tensor alone when it is not contiguous)."""
    return memoryview(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def write_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: str | Path) -> None:
    """Write and flush one safetensors file, tensor by tensor from its own memory (no serialised copy of the shard,
    as `safetensors.torch.save_file` makes), in safetensors' own layout: tensors by dtype, widest first, then by name;
    a compact JSON header padded with spaces to 8 bytes. tests/test_synthesize.py checks the bytes against save_file.
    The metadata keys are written sorted (safetensors writes them in hash order, which differs between processes, so
    equal files would differ in bytes), and the file gets the mode the umask allows (shared files are readable).
    """
    order = sorted(tensors, key=lambda n: (-_DTYPES[tensors[n].dtype][1], n))
    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    for name in order:
        t = tensors[name]
        size = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype][0], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in order:
            f.write(_bytes(tensors[name]))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, FILE_MODE)


def share_files(folder: str | Path) -> None:
    """Give every file under `folder` the mode the umask allows: safetensors' `save_file`, and so diffusers'
    `save_pretrained`, writes weights with mode 600, which other users of a shared model folder cannot read."""
    for f in Path(folder).rglob("*"):
        if f.is_file() and not f.is_symlink():
            f.chmod(FILE_MODE)


def rewrite_sorted(path: str | Path) -> None:
    """Rewrite a small safetensors file another library wrote (diffusers' LoRA file: metadata in hash order, mode
    600) with the same tensors and metadata, deterministically and readable as the umask allows."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
        metadata = f.metadata() or {}
    tmp = Path(path).with_name(f".{Path(path).name}.sorted")
    write_safetensors(tensors, metadata, tmp)
    os.replace(tmp, path)


def copy_safetensors(path: str | Path, dst: str | Path, check=None) -> None:
    """Copy a safetensors file (one `core.inputs.check_safetensors` passed) byte for byte, `check(path, name, tensor)`
    seeing each tensor just before its bytes are copied (and refusing it by raising): the check and the copy in one
    read of the file, where a check and then a file copy read it twice (a 14B student's 28-56 GB). Each tensor is
    read once from storage, by the check; its bytes are then copied in the kernel from the page cache that read
    filled (`_send`), as shutil.copyfile copies, not through Python. The file's mode and times go with it, as
    shutil.copy2 keeps them. A refused file's copy stops part-written: `dst` belongs in a temporary folder."""
    import shutil

    from safetensors import safe_open

    with open(path, "rb") as f, open(dst, "wb", buffering=0) as out, safe_open(str(path), framework="pt") as h:
        same, now = os.fstat(f.fileno()), os.stat(path)
        if (same.st_ino, same.st_dev) != (now.st_ino, now.st_dev):  # replaced between the two opens
            raise _changed(path)
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        start, done = 8 + n, 0
        # in data order (an empty tensor sharing its start with the next one: by the whole span, so `done` never
        # goes back and no byte is written twice)
        for name in sorted((k for k in header if k != "__metadata__"), key=lambda k: tuple(header[k]["data_offsets"])):
            if check is not None:
                check(Path(path), name, h.get_tensor(name))
            done = _send(f, out, done, start + header[name]["data_offsets"][1], path)
        _send(f, out, done, os.fstat(f.fileno()).st_size, path)  # nothing past the last tensor in a whole file
    shutil.copystat(path, dst)


def _changed(path) -> AccVideoError:
    return AccVideoError(f"{path} changed while it was copied; rerun once nothing writes it")


def _send(src, out, begin: int, end: int, path) -> int:
    """Append bytes [begin, end) of file `src` to `out` (unbuffered); returns max(begin, end). os.sendfile copies
    them in the kernel; where it cannot write to a file (macOS: sockets only) they are read and written."""
    while begin < end:
        try:
            sent = os.sendfile(out.fileno(), src.fileno(), begin, end - begin)
        except (AttributeError, OSError):  # a real read or write fault is raised again by the plain copy
            sent = out.write(os.pread(src.fileno(), min(end - begin, 64 << 20), begin))
        if not sent:  # the file ended early: truncated under the copy
            raise _changed(path)
        begin += sent
    return max(begin, end)
