"""A Ctrl-C always stops the run, even one Python swallowed.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be. When that is a fork handler
or a finalizer (logging's and filelock's at-fork hooks, a `__del__`), Python prints `Exception ignored in ...` and
carries on, so a run the user stopped went on to the end and exited 0. `catch_interrupts` (the CLI, around a whole
command) records every Ctrl-C before raising it; the long loops call `check` once a step, so a swallowed one stops
the run at the next step boundary, and a command that returns after one is still reported as interrupted.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

INTERRUPTED = threading.Event()  # a Ctrl-C arrived during this command (raised, perhaps swallowed)


def _record(signum: int, frame: object) -> None:
    INTERRUPTED.set()
    raise KeyboardInterrupt


@contextmanager
def catch_interrupts() -> Iterator[None]:
    """Record every SIGINT while the block runs (the previous handler comes back after it); main thread only."""
    INTERRUPTED.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _record)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        INTERRUPTED.clear()  # library calls after the command (tests, notebooks) are not interrupted by it


def check() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C that something swallowed; a step boundary of every long loop calls it."""
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt
