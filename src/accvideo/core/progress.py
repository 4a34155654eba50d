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
        kwargs.setdefault("maxinterval", LOG_INTERVAL)  # tqdm's monitor thread redrew a bar every 10 s (its default)
    disable = not show or (transient and not terminal)
    bar = tqdm(iterable, desc=desc, unit=unit, disable=disable, leave=not transient, **kwargs)
    if not terminal:  # tqdm redraws at every set_postfix / set_description unless told not to, which bypassed
        # mininterval: a training loop that posts its loss each step wrote a frame a step into the log
        for name in ("set_postfix", "set_postfix_str", "set_description", "set_description_str"):
            setter = getattr(bar, name)
            setattr(bar, name, lambda *a, _set=setter, **kw: _set(*a, **{"refresh": False, **kw}))
    return bar
