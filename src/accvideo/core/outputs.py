"""The output guard: a command writes only into what it made, never over the user's files or its own inputs.

A folder output carries a hidden marker, `.accvideo-output.json`, naming the command that made it. A command
takes a folder that is new, empty, or marked as its own (so a rerun resumes or replaces its own work), and refuses
with one line a file, a folder of another command, a non-empty folder accvideo did not make, and any folder that
is (or lies inside) one of its inputs: the teacher, the dataset, the student's run. `--force` never widens this.
A single-file output (a clip, its settings YAML, a prompt list) replaces only a file accvideo wrote: the folder's
ledger, `.accvideo-files.json`, records each such file's sha256, and a file edited or put there since is refused.
A ledger past 64 KB takes its changes as lines appended to `.accvideo-files.jsonl`, folded in when that outgrows it.
Hidden names keep both out of a teacher's content identity and out of copied pipelines.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: the ledger's read-modify-write is then unlocked
    fcntl = None

from accvideo.core.files import file_sha256, is_stale_writer, prepare_output, write_json_atomic, writer_id
from accvideo.core.inputs import MAX_TEXT, object_lines, parse_json, read_small_file
from accvideo.errors import AccVideoError

MARKER = ".accvideo-output.json"
LEDGER = ".accvideo-files.json"
JOURNAL = ".accvideo-files.jsonl"  # the ledger's changes since it was last written whole (large ledgers only)
INLINE_BYTES = 64 << 10  # a ledger under this (about 500 files) is rewritten whole at each change, as always
LOCK = ".accvideo-lock"
FORMAT = "accvideo.output/1"


def _guard_files(name: str) -> bool:
    """The guard's own files (and their temporary names), which do not make a folder 'non-empty'."""
    return name.startswith((MARKER, LEDGER, JOURNAL, LOCK, f".{MARKER}", f".{LEDGER}"))


def owner(folder: str | Path) -> str | None:
    """The command that made `folder` (its marker), or None when it holds no marker or one that does not parse (a
    rerun writes it again). A marker that is no small regular file (a folder, a FIFO, a device) is one line."""
    path = Path(folder) / MARKER
    try:
        raw = read_small_file(path)
    except OSError:
        return None
    except ValueError as exc:
        raise AccVideoError(
            f"{path} {exc}, so not accvideo's folder marker; remove it or choose another folder"
        ) from None
    try:
        data = parse_json(raw)
    except ValueError:
        return None
    return data.get("command") if isinstance(data, dict) and data.get("format") == FORMAT else None


def mark_folder(folder: str | Path, command: str) -> None:
    """Record that `command` made `folder` (kept if already there: markers never change owner)."""
    folder = Path(folder)
    if owner(folder) != command:  # which refuses a marker that is a folder (the rename failed), a FIFO or a device
        write_json_atomic(folder / MARKER, {"format": FORMAT, "command": command})


def _inside(path: Path, inputs: Mapping[str, str | Path]) -> tuple[str, Path] | None:
    """(name, folder) of the first input that `path` is, or lies inside; None when it touches none."""
    for name, value in inputs.items():
        if value is None:
            continue
        folder = Path(value).expanduser().resolve()
        if path == folder or folder in path.parents:
            return name, folder
    return None


# files that make the folder holding them one whole: a model (a file added changes its content identity, and so would
# orphan the datasets and students made from it), a distill run's student/ (replaced whole at every save: a file put
# there was deleted by the next one)
WHOLE_FOLDERS = {
    "model_index.json": ("model folder", "it would change that model's identity"),
    "student.json": ("student folder", "`accvideo distill` replaces it whole at every save"),
}


def _check_not_in_a_pipeline(path: Path, flag: str = "--out") -> None:
    """Refuse an output inside a folder that is one whole (WHOLE_FOLDERS: a diffusers pipeline, a student)."""
    for folder in path.parents:
        for name, (kind, why) in WHOLE_FOLDERS.items():
            if (folder / name).is_file():
                raise AccVideoError(
                    f"{flag} {path} lies inside the {kind} {folder} ({why}); choose another {flag} outside it"
                )


def _check_no_dangling_link(path: Path, *, file: bool = False, flag: str = "--out") -> None:
    """Refuse an --out that is, or lies under, a symbolic link to nothing: mkdir fails on one ('File exists') while a
    rename replaces it, so commands treated it two ways. `mkdir -p` refuses it too; the fix is the user's."""
    for part in (path, *path.parents):
        if not part.is_symlink():
            continue
        try:
            part.stat()
        except FileNotFoundError:
            target = os.readlink(part)
            fix = "remove the link" if file and part == path else f"create {target} (mkdir -p)"
            raise AccVideoError(
                f"{flag} {path}: {part} is a link to {target}, which does not exist; {fix} or choose another {flag}"
            ) from None
        except OSError:  # a loop (ELOOP): said by the resolve that follows
            pass


def check_folder(
    out: str | Path,
    command: str,
    *,
    inputs: Mapping[str, str | Path | None] | None = None,
    legacy: Callable[[Path], bool] | None = None,
    flag: str = "--out",
) -> Path:
    """The resolved folder `command` may write, or a one-line AccVideoError; creates nothing.

    `inputs` name folders the command reads (teacher, dataset, run); `legacy(folder)` recognises this command's
    output from before markers existed, so such runs still resume; `flag` is the setting that names the folder.
    """
    _check_no_dangling_link(Path(out).expanduser().absolute(), flag=flag)
    path = Path(out).expanduser().resolve()
    hit = _inside(path, inputs or {})
    if hit is not None:
        name, folder = hit
        where = "is" if path == folder else "lies inside"
        raise AccVideoError(f"{flag} {path} {where} the {name} folder {folder}; choose another {flag}")
    _check_not_in_a_pipeline(path, flag)
    if path.exists() and not path.is_dir():
        raise AccVideoError(f"{flag} {path} is a file, not a folder; choose another {flag}")
    if not path.is_dir():
        return path
    made_by = owner(path)
    if made_by == command:
        return path
    if made_by is not None:
        raise AccVideoError(
            f"{flag} {path} holds the output of `accvideo {made_by}`, not of `accvideo {command}`; "
            f"choose another {flag}"
        )
    if any(not _guard_files(p.name) for p in path.iterdir()) and not (legacy is not None and legacy(path)):
        raise AccVideoError(
            f"{flag} {path} is not empty and was not made by `accvideo {command}`; choose a new or empty folder "
            "(accvideo never writes into folders it did not make, --force included)"
        )
    return path


def claim_folder(
    out: str | Path,
    command: str,
    *,
    inputs: Mapping[str, str | Path | None] | None = None,
    legacy: Callable[[Path], bool] | None = None,
    flag: str = "--out",
) -> Path:
    """`check_folder`, then create the folder and mark it as `command`'s; returns the folder as given (expanded)."""
    check_folder(out, command, inputs=inputs, legacy=legacy, flag=flag)
    folder = Path(out).expanduser()
    prepare_output(folder / MARKER, flag)  # creates it, or one line saying why not
    mark_folder(folder, command)
    return folder


def _lock_holder(lock: Path) -> str | None:
    """The writer a lock file names ('' when empty), None when there is none; a lock that is no small regular file
    (a FIFO: reading it waited forever) is one line."""
    try:
        return read_small_file(lock).decode(errors="replace").strip()
    except OSError:
        return None
    except ValueError as exc:
        raise AccVideoError(f"{lock} {exc}, so not accvideo's lock; remove it and rerun") from None


def check_not_being_written(folder: str | Path) -> None:
    """Refuse to read a folder another live accvideo command holds the lock of: a SynVid still being synthesized (a
    reader saw only the items written so far, silently), a run or decoder being trained (its student/ or decoder/ is
    replaced at every save, so a reader could take the JSON of one save and the weights of the next)."""
    lock = Path(folder) / LOCK
    holder = _lock_holder(lock)
    if holder is None:
        return
    if holder and not is_stale_writer(holder):
        made_by = owner(folder)
        command = f"`accvideo {made_by}`" if made_by else "another accvideo command"
        # stopping a trainer early is a way to end it; anything else resumes from where it was stopped
        stopped = " (a stopped training run keeps its last iteration)" if made_by in TRAINERS else ""
        raise AccVideoError(
            f"{folder} is being written by {command} ({holder}); wait for it to end{stopped}, then rerun, or delete "
            f"{lock} if none is running"
        )


TRAINERS = ("distill", "decoder distill", "teacher train")


EMPTY_LOCK_AGE_S = 10.0  # far longer than a writer takes between creating its lock and writing its name


class FolderLock:
    """One writer at a time in a run folder: OUT/.accvideo-lock holds the writer's HOST-PID while it runs.

    A second writer is refused with one line (two would interleave their logs and checkpoints); a lock whose writer
    died on this host is taken over; `release()` removes it (only if it is still this writer's)."""

    def __init__(self, folder: str | Path, command: str, path: str | Path | None = None):
        # `path`: the lock file, where the folder itself is replaced whole (export: a sibling of the folder)
        self.path, self.me = Path(path) if path is not None else Path(folder) / LOCK, writer_id()
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if (holder is not None and is_stale_writer(holder)) or self._empty_and_old():
                    self._take_over(holder)  # its writer was killed: take the folder over
                    continue
                raise AccVideoError(
                    f"another `accvideo {command}` ({holder or 'unknown writer'}) is writing {folder}; wait for it to "
                    f"end, or delete {self.path} if none is running"
                ) from None
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(self.me)
            except BaseException:  # a full disk: an empty lock would refuse every rerun as "unknown writer"
                self.path.unlink(missing_ok=True)
                raise
            return
        raise AccVideoError(f"cannot lock {folder} for `accvideo {command}`; delete {self.path} and rerun")

    @classmethod
    def beside(cls, path: str | Path, command: str) -> FolderLock:
        """The lock of an output replaced whole (a clip, an export folder): a hidden sibling `.NAME.accvideo-lock`."""
        path = Path(path)
        return cls(path, command, path=path.with_name(f".{path.name}{LOCK}"))

    def _take_over(self, stale: str | None) -> None:
        """Remove the lock of a writer found dead (`stale`: its holder, None for an empty lock), only if it still is
        that lock: two reruns that found the same dead writer took turns, and the second removed the first's fresh
        lock and went on beside it. The check and the removal are one step under the folder's flock."""
        with _folder_lock(self.path.parent, fcntl.LOCK_EX if fcntl is not None else None):
            if self._holder() == stale and (stale is not None or self._empty_and_old()):
                self.path.unlink(missing_ok=True)

    def _empty_and_old(self) -> bool:
        """An empty lock older than a writer takes to fill it: one whose write failed before the cleanup above."""
        try:
            st = self.path.stat()
        except OSError:
            return False
        return st.st_size == 0 and time.time() - st.st_mtime > EMPTY_LOCK_AGE_S

    def _holder(self) -> str | None:
        return _lock_holder(self.path) or None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        """Let the folder go. A lock that cannot be removed (the file system turned read-only: the very fault the
        run is stopping on) stays behind, and a rerun takes it over as its writer's is gone; raising here would
        have replaced the error that says what went wrong."""
        if self._holder() == self.me:
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass


# --- single files ------------------------------------------------------------------------------------------------


def _read_ledger(folder: Path) -> dict:
    """The entries of the ledger file as last written whole (an older accvideo's folder holds only this)."""
    try:  # MAX_TEXT, not a marker's 4 MB: a ledger of 35,000 files is 4 MB, and past it every entry was dropped
        data = parse_json(read_small_file(folder / LEDGER, MAX_TEXT))
    except (OSError, ValueError):  # absent, no JSON, or no small file (a FIFO): none; the next write replaces it
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("format") == FORMAT else None
    return files if isinstance(files, dict) else {}


def _apply(files: dict, change: dict) -> None:
    """One journal line: `entry` sets a name's entry (null drops it), `pending` adds what is about to be renamed."""
    name = change.get("name")
    if not isinstance(name, str):
        return
    if "entry" in change:
        if change["entry"] is None:
            files.pop(name, None)
        elif isinstance(change["entry"], dict):
            files[name] = change["entry"]
    elif isinstance(change.get("pending"), str):
        files[name] = {**files.get(name, {"command": change.get("command")}), "pending": change["pending"]}


def _read(folder: Path) -> dict:
    """The ledger file's entries with the journal's changes since applied, in order (a torn last line, its writer
    killed mid-append, lists nothing). Replaying a journal already folded in (a fold killed before it removed the
    journal) changes nothing: each line sets, drops or marks one name."""
    files = _read_ledger(folder)
    try:
        text = read_small_file(folder / JOURNAL, MAX_TEXT).decode("utf-8", errors="replace")
    except (OSError, ValueError):  # none, or no small file: the next fold replaces it
        return files
    for change in object_lines(text):
        _apply(files, change)
    return files


@contextmanager
def _folder_lock(folder: Path, kind: int | None) -> Iterator[None]:
    """A `flock` (kind: fcntl.LOCK_EX or LOCK_SH) on the folder itself, so no lock file is left: the ledger's
    writers take turns, and a reader never sees a fold halfway (the ledger rewritten, the journal not yet removed)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder we may write but not read: unlocked, as before
        fd = None
    try:
        if fd is not None and fcntl is not None:
            try:
                fcntl.flock(fd, kind)
            except OSError:  # a file system without flock (ENOLCK on some network mounts): unlocked, as before
                pass
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock


def _ledger(folder: Path) -> dict:
    """Name -> entry of every file the folder's ledger lists (as one consistent view against its writers)."""
    with _folder_lock(folder, fcntl.LOCK_SH if fcntl is not None else None):
        return _read(folder)


def _append(path: Path, line: bytes) -> bool:
    """Append one line to the journal at `path` (one write; a line after a torn one starts on a line of its own).
    False when it is no regular file we may append to (a FIFO, a link, a folder): the caller folds instead."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError:
        return False
    try:
        size = os.fstat(fd)
        if not stat.S_ISREG(size.st_mode):
            return False
        if size.st_size and os.pread(fd, 1, size.st_size - 1) != b"\n":
            line = b"\n" + line
        view = memoryview(line)
        while view:  # a short write (a full disk) raises on the next one: the writer's OSError, as before
            view = view[os.write(fd, view) :]
        return True
    finally:
        os.close(fd)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _change(folder: Path, change: dict) -> None:
    """Apply one change to the folder's ledger, as one step against other processes (under the folder's `flock`).

    A ledger under INLINE_BYTES is rewritten whole, as it always was (dropping the entries of files no longer
    there). A larger one takes the change as one line appended to the journal beside it, and is rewritten whole (the
    journal folded in, then removed) only when the journal outgrows it: O(1) amortised a change, where rewriting
    the whole ledger each time made recording N files cost O(N^2) (0.5 s a file at 50,000 files)."""
    line = (json.dumps(change) + "\n").encode()
    with _folder_lock(folder, fcntl.LOCK_EX if fcntl is not None else None):
        ledger, journal = _size(folder / LEDGER), _size(folder / JOURNAL)
        small = ledger + journal + len(line) <= INLINE_BYTES
        if not small and journal + len(line) <= max(ledger, INLINE_BYTES) and _append(folder / JOURNAL, line):
            return
        files = _read(folder)
        _apply(files, change)
        keep = change["name"] if "pending" in change else None  # a file about to be renamed into place
        files = {n: e for n, e in files.items() if (folder / n).is_file() or n == keep}
        write_json_atomic(folder / LEDGER, {"format": FORMAT, "files": files})
        try:
            (folder / JOURNAL).unlink(missing_ok=True)  # its lines are in the ledger now (replaying them is harmless)
        except OSError:
            pass


def claim_file(path: str | Path, command: str, *, inputs: Mapping[str, str | Path | None] | None = None) -> Path:
    """A single output file `command` (for the caller's record) may write: new, or one any accvideo command wrote and
    nobody changed since; one line else."""
    path = Path(path).expanduser()
    _check_no_dangling_link(path.absolute(), file=True)
    resolved = path.resolve()
    hit = _inside(resolved, inputs or {})
    if hit is not None:
        raise AccVideoError(f"--out {resolved} lies inside the {hit[0]} folder {hit[1]}; choose another --out")
    _check_not_in_a_pipeline(resolved)
    if owner(resolved.parent) == "sample":  # a `sample --prompts` folder: its next resume wrote its rows over the file
        raise AccVideoError(
            f"--out {resolved} lies inside {resolved.parent}, the clip folder of `accvideo sample --prompts` (it "
            "writes its rows' clips there, over any file of the same name); choose another --out"
        )
    if path.is_dir():
        raise AccVideoError(f"{resolved} is a folder, where a file is to be written; choose another --out")
    if path.exists() or path.is_symlink():
        entry = _ledger(path.parent).get(path.name)
        if not path.is_file() or entry is None or file_sha256(path) not in _vouched(entry):
            raise AccVideoError(
                f"{resolved} exists and was not written by accvideo (or was changed since); move it away or "
                "choose another --out"
            )
    prepare_output(path)
    return path


def _vouched(entry: dict) -> set:
    """The contents a ledger entry vouches for: what was recorded, and what was about to be renamed into place."""
    return {entry.get("sha256"), entry.get("pending")} - {None}


def vouch(path: str | Path, command: str) -> Callable[[Path], None]:
    """A writer's `before_replace` hook: list the whole temporary file's content in the ledger as `path`'s pending
    content before the rename, so a run killed between the rename and `record_file` leaves a file the rerun may
    still replace (it was refused as 'not written by accvideo' for good)."""
    path = Path(path)

    def hook(tmp: Path) -> None:
        _change(path.parent, {"name": path.name, "pending": file_sha256(tmp), "command": command})

    return hook


def record_file(path: str | Path, command: str) -> None:
    """After writing `path`: list it in its folder's ledger, so a rerun may replace it."""
    path = Path(path)
    _change(path.parent, {"name": path.name, "entry": {"command": command, "sha256": file_sha256(path)}})


def remove_file(path: str | Path, command: str) -> bool:
    """Remove a single output that `command` wrote and nobody changed since (its ledger entry says so), and drop that
    entry; anything else (a user's file, another command's, one edited since) is kept. True when it was removed."""
    path = Path(path)
    entry = _ledger(path.parent).get(path.name)
    if entry is None or entry.get("command") != command or not path.is_file() or path.is_symlink():
        return False
    if file_sha256(path) not in _vouched(entry):
        return False
    path.unlink()
    _change(path.parent, {"name": path.name, "entry": None})  # the entry goes with its file
    return True
