"""Progress bars, made one way. On a terminal a bar redraws in place. When stderr is a file or a pipe (a log of a
run under nohup, a CI job, a test), a transient bar (one a terminal erases when it ends: an inner loop) is not
drawn at all, since erasing it would leave a line of blanks in the log; a lasting bar redraws at most every
`LOG_INTERVAL` seconds and ends on a line of its own."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm.auto import tqdm

LOG_INTERVAL = 30.0  # seconds between a lasting bar's redraws in a log


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):  # stderr closed or replaced by an object without a terminal
        return False


def progress_bar(
    iterable: Iterable | None = None,
    *,
    desc: str,
    unit: str,
    show: bool = True,
    transient: bool = False,
    **kwargs,
) -> tqdm:
    """A tqdm bar over `iterable` (or one updated by hand: total=...). `show=False` draws nothing (another rank's,
    or a quiet run's); `transient` bars vanish when done on a terminal and are never drawn in a log."""
    terminal = stderr_is_terminal()
    if not terminal:
        kwargs.setdefault("mininterval", LOG_INTERVAL)
    disable = not show or (transient and not terminal)
    return tqdm(iterable, desc=desc, unit=unit, disable=disable, leave=not transient, **kwargs)
