"""Small files written whole or not at all: a temporary name in the same folder that names its writer, then a rename.

A temporary name carries its writer's host and pid (`.NAME.HOST-PID.part`), so a start-up cleanup removes only
what a dead writer on this host left, never a file another live process is still writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

from accvideo.errors import AccVideoError

_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname() or "host")
# `.NAME.HOST-PID.part`, or `.NAME.HOST-PID.part.EXT` where the writer picks the format from the suffix (videos)
_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.part(?:\.[A-Za-z0-9]+)?$")


def temp_name(path: str | Path) -> Path:
    """A hidden temporary sibling of `path` that names this writer (host and pid)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{writer_id()}.part")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def writer_id() -> str:
    """This process as a writer: HOST-PID (what temporary names and folder locks carry)."""
    return f"{_HOST}-{os.getpid()}"


def is_stale_writer(writer: str) -> bool:
    """Whether what the writer HOST-PID left may be taken over: it is this process, or a dead pid on this host.
    Another host's writer, or a live one, never is: we cannot know it is done."""
    host, _, pid = writer.rpartition("-")
    return host == _HOST and pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid)))


def is_stale_temp(path: str | Path) -> bool:
    """Whether a temporary file `.NAME.HOST-PID.part` (or `.NAME.HOST-PID.part.EXT`) was left by a stale writer
    (`is_stale_writer`); a file without a writer's name never is."""
    match = _TEMP.search(Path(path).name)
    return match is not None and is_stale_writer(f"{match['host']}-{match['pid']}")


def remove_stale_temps(folder: str | Path, prefix: str = ".") -> int:
    """Remove the temporary files a stale writer left in `folder` (those whose names start with `prefix`: one
    output's own); how many. Never a live writer's, never a file without a writer's name."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir() if p.name.startswith(prefix) and p.is_file() and is_stale_temp(p)]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def write_text_atomic(path: str | Path, text: str, before_replace: Callable[[Path], None] | None = None) -> Path:
    """Write `text` so a reader (or a run killed midway) never sees half a file; `before_replace(tmp)` runs on the
    whole temporary file just before it takes `path`'s name (core/outputs.vouch)."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        try:
            # a path of bytes that are no UTF-8 (held as surrogates: `evaluate --videos` of such a folder names it in
            # metrics.md) is written as those bytes; strict UTF-8 was a traceback after metrics.json was written
            tmp.write_text(text, encoding="utf-8", errors="surrogateescape")
        except OSError as exc:  # a failed write() names no file: the one-line error should name this one
            if exc.filename is None and exc.errno is not None:
                raise OSError(exc.errno, exc.strerror, str(path)) from None
            raise
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data, indent: int = 1) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def prepare_output(out: str | Path, flag: str = "--out") -> Path:
    """Create the output's folder (one-line error if impossible, naming `flag`) and check it is writable."""
    out = Path(out).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AccVideoError(
            f"cannot create output folder {out.parent} ({exc.strerror}); choose another {flag}"
        ) from None
    if not os.access(out.parent, os.W_OK):
        raise AccVideoError(f"output folder {out.parent} is not writable; choose another {flag}")
    return out


def visible_files(root: str | Path) -> list[Path]:
    """The files under `root`, sorted, leaving out hidden ones (any part of the path starting with '.': accvideo's
    markers and locks, caches): what a model folder is made of (its identity, an export's file list)."""
    root = Path(root)
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def stat_witness(path: str | Path) -> list[int]:
    """What changes when a file is written, replaced or has its times set: size, mtime, ctime (which no user can set
    back) and inode (a copy, or a rename over it, is another). A file whose witness is the one recorded when its bytes
    were hashed needs no new hash; what it misses is damage below the file system (a disk's bit rot)."""
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def save_state_file(path: str | Path, state: dict) -> Path:
    """torch.save `state` (tensors, state dicts, ints, RNG states) to a temporary file, flush it, rename it over
    `path`: a kill or a full disk mid-write leaves the previous file whole, and a failed write is an OSError."""
    import torch

    path = Path(path)
    tmp = temp_name(path)
    try:
        try:
            torch.save(state, tmp)
        except RuntimeError:  # torch's zip writer reports a failed write as e.g. "unexpected pos ..."
            raise write_failure(path, state_bytes(state)) from None
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def state_bytes(state) -> int:
    """The bytes of every tensor in a (nested) state: about what its file needs on disk."""
    import torch

    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(v) for v in state)
    return 0


def size_text(n: float) -> str:
    """Bytes for people: KB under a MB (a small file on a full disk is not "0 MB"), MB under a GB, else GB."""
    if n < 2**20:
        return f"{n / 2**10:,.0f} KB"
    return f"{n / 2**20:,.0f} MB" if n < 2**30 else f"{n / 2**30:,.1f} GB"


def free_bytes(path: str | Path) -> int | None:
    """The free bytes of the file system that holds `path` (or would: its nearest existing folder); None when none
    can be read."""
    import shutil

    path = Path(path).expanduser().absolute()
    for folder in (path, *path.parents):
        try:
            if folder.is_dir():
                return shutil.disk_usage(folder).free
        except OSError:
            return None
    return None


def check_free_space(path: str | Path, needed: int, what: str, fix: str) -> None:
    """Refuse at the start, in one line, a write of `needed` bytes (`what`) that the disk holding `path` cannot take:
    hours of work would otherwise end at a full disk. Nothing is said when the free space cannot be read."""
    free = free_bytes(path)
    if free is not None and needed > free:
        raise AccVideoError(
            f"{what} needs about {size_text(needed)} more in {Path(path).expanduser()}, and that disk has "
            f"{size_text(free)} free; {fix}"
        )


def write_failure(path: Path, needed: int) -> OSError:
    """The OSError of a write that failed without one (torch.save's): EFBIG when the file-size limit (ulimit -f) is
    below what it needs, ENOSPC (with the space needed and free) when the disk is short of it, EIO otherwise."""
    import errno
    import resource
    import shutil

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    free = shutil.disk_usage(path.parent).free
    if limit != resource.RLIM_INFINITY and limit <= needed:
        code = errno.EFBIG
    else:
        code = errno.ENOSPC if free < needed + (64 << 20) else errno.EIO
    err = OSError(code, os.strerror(code), str(path))
    err.needed, err.free = needed, free
    return err


def load_state_file(path: str | Path, what: str, fix: str) -> dict | None:
    """A training state saved with torch.save, read weights-only (no code runs on load); None when there is none.

    Anything else at `path` (a folder, a damaged or foreign file) is one AccVideoError line: `path` is not a
    readable `what`, why in a few words, and `fix`."""
    import warnings

    import torch

    path = Path(path)
    if not path.exists():
        return None
    if not path.is_file():
        raise AccVideoError(f"{path} is not a file, so not a readable {what}; {fix}")
    try:
        with warnings.catch_warnings():  # torch's notes on the pickle protocol: the one line below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        text = str(exc).strip()
        why = (
            "not a torch file of tensors and plain data"  # torch's own advice here (weights_only=False) runs code
            if text.startswith("Weights only load failed")
            else (text.splitlines() or [type(exc).__name__])[0][:120]
        )
        raise AccVideoError(f"{path} is not a readable {what} ({why}); {fix}") from None
    if not isinstance(state, dict):
        raise AccVideoError(f"{path} is not a readable {what} (it holds a {type(state).__name__}); {fix}")
    return state
