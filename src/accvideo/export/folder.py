"""Where an export goes: refuse dangerous targets, build in a temporary folder, rename into place."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from accvideo.core.files import prepare_output, visible_files
from accvideo.core.outputs import FolderLock, check_folder, mark_folder
from accvideo.core.tensorfile import share_files
from accvideo.errors import AccVideoError
from accvideo.models.student import EXPORT_MARKER

MARKER = EXPORT_MARKER  # written by every export: an earlier export may be replaced without --force
FORMAT = "accvideo.export/1"
COMMAND = "export"


def check_target(out: Path, *, protected: dict[str, Path]) -> Path:
    """The resolved output folder: new, empty or an earlier export (the output guard, core/outputs.py), and
    neither one of the export's inputs nor a folder that holds one."""
    given = Path(out).expanduser()
    out = given.resolve()
    for name, path in protected.items():
        path = Path(path).resolve()
        if out == path or out in path.parents:
            raise AccVideoError(f"--out {out} would replace the {name} folder {path}; choose another --out")
    check_folder(given, COMMAND, inputs=protected, legacy=lambda p: (p / MARKER).is_file())
    check_only_exported(out)
    prepare_output(out)  # its parent exists and is writable, or a one-line error
    return out


FILES = ".accvideo-export-files"  # the files an export wrote, one relative path a line (hidden: not the model's)


def _visible_files(folder: Path) -> list[str]:
    """Relative paths of the folder's files, hidden ones (accvideo's markers) left out."""
    return [p.relative_to(folder).as_posix() for p in visible_files(folder)]


def check_only_exported(out: Path) -> None:
    """Refuse to replace an earlier export that holds a file it did not write (the user's notes, an added
    component): the folder is replaced whole, and such a file was deleted without a word. An export made before
    the list was kept cannot be told apart, and is replaced as before."""
    try:
        written = set((out / FILES).read_text().splitlines())
    except OSError:
        return
    added = [rel for rel in _visible_files(out) if rel not in written]
    if added:
        more = f" and {len(added) - 1} more" if len(added) > 1 else ""
        raise AccVideoError(
            f"{out} holds {added[0]}{more}, which the earlier export did not write and a new export would delete "
            f"(it replaces the folder whole); move it out of {out}, or choose another --out"
        )


@contextmanager
def building(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `out` to fill; on success it replaces `out` whole, on failure it is removed.

    One export at a time writes `out`: a sibling lock file (`out` itself is replaced whole) refuses a second one in
    one line, where both would build and race on the final renames."""
    with FolderLock.beside(out, COMMAND):
        tmp = out.with_name(f".{out.name}.part-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            mark_folder(tmp, COMMAND)
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / FILES).write_text("".join(f"{rel}\n" for rel in _visible_files(tmp)))
        share_files(tmp)  # diffusers' weights (and a teacher's copied files) may be mode 600
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)


def copy_tree(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> None:
    """Copy a component folder (hidden files, e.g. caches, are left out, and names matching `skip`: files the caller
    copies itself). A file of it that cannot be read (a symbolic-link loop, a link to nothing) is one line naming it
    in the teacher, not the export's temporary copy."""
    try:
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".*", *skip))
    except shutil.Error as exc:  # copytree goes on past a bad entry and raises every (src, dst, why) at the end
        for bad, _, why in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
            try:
                os.stat(bad)
            except OSError:  # the teacher's entry itself cannot be read: a loop, a link to nothing
                raise AccVideoError(
                    f"{bad} cannot be copied into the export ({why}); fix or remove it in {src}"
                ) from None
        raise  # the writing failed (a full disk, the file-size limit): the fault's own line
