"""Where an export goes: refuse dangerous targets, build in a temporary folder, rename into place."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from accvideo.core.files import prepare_output
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
    prepare_output(out)  # its parent exists and is writable, or a one-line error
    return out


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
        share_files(tmp)  # diffusers' weights (and a teacher's copied files) may be mode 600
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a component folder (hidden files, e.g. caches, are left out)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".*"))
