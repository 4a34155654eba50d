"""Ctrl-C and SIGTERM: a run always stops, and a training run keeps the iterations it has done.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be. When that is a fork handler
or a finalizer (logging's and filelock's at-fork hooks, a `__del__`), Python prints `Exception ignored in ...` and
carries on, so a run the user stopped went on to the end and exited 0. `catch_interrupts` (the CLI, around a whole
command) records every Ctrl-C and SIGTERM before raising it; the long loops call `check` once a step, so a
swallowed one stops the run at the next step boundary, and a command that returns after one is still reported as
interrupted.

A training loop inside `deferred()` is not broken off mid-step by the first signal: it only asks the loop to stop
(`stop_requested`), and the loop saves its checkpoint at the next iteration boundary and raises `Interrupted`, so
the rerun resumes from the last iteration done. A signal during the last iteration lets the run finish (its summary
is seconds of work) and then says so (`finished_line`): it used to end with a bare "interrupted" that did not say
the run was complete. torchrun passes the signal it gets (Ctrl-C, SIGTERM) on to its
workers, and a cluster sends SIGTERM to a job it preempts. A second signal stops the run at once, as before.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

INTERRUPTED = threading.Event()  # a Ctrl-C or SIGTERM arrived during this command (raised, deferred or swallowed)
SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []  # the first signal's number
_deferring = threading.Event()


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal at a point it chose (after saving); its message is the line the CLI prints."""


def _record(signum: int, frame: object) -> None:
    again = INTERRUPTED.is_set()
    INTERRUPTED.set()
    if not again:
        _received.append(signum)
        if _deferring.is_set():
            return  # the training loop saves at its next iteration boundary and stops
    raise KeyboardInterrupt


@contextmanager
def catch_interrupts() -> Iterator[None]:
    """Record every SIGINT and SIGTERM while the block runs (the previous handlers come back after it); main
    thread only. A signal the process was started ignoring stays ignored, as Python itself leaves it: a shell
    starts a script's background jobs (`cmd &`) with SIGINT ignored, so the terminal's Ctrl-C spares them."""
    INTERRUPTED.clear()
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _record) for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    hook = sys.unraisablehook

    def quiet(unraisable) -> None:
        # the signal raised inside a finalizer (a regex Group.__del__ while a tokenizer loads): Python printed
        # "Exception ignored in ..." and its traceback before the one `interrupted` line; `check` still stops the run
        if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and INTERRUPTED.is_set()):
            hook(unraisable)

    sys.unraisablehook = quiet
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for s, handler in previous.items():
            signal.signal(s, handler)
        INTERRUPTED.clear()  # library calls after the command (tests, notebooks) are not interrupted by it


@contextmanager
def deferred() -> Iterator[None]:
    """Inside, the first signal only asks the loop to stop (`stop_requested`); a second one stops at once."""
    _deferring.set()
    try:
        yield
    finally:
        _deferring.clear()


def stop_requested() -> bool:
    """Whether a signal asked the run to stop (the loop inside `deferred` saves, then raises `Interrupted`)."""
    return INTERRUPTED.is_set()


def received() -> int:
    """The number of the signal that asked this process to stop, 0 when none did."""
    return _received[0] if _received and INTERRUPTED.is_set() else 0


def adopt(signum: int) -> None:
    """Stop as a peer asked (the ranks of a launch agreed on its signal, `signum`): a rank the signal never reached
    says the same line and exits with the same code as the one it reached (it said "interrupted", a Ctrl-C's)."""
    if signum and not _received:
        _received.append(signum)


def check() -> None:
    """Raise the KeyboardInterrupt of a signal that something swallowed; a step boundary of every long loop calls
    it. Inside `deferred` the loop itself stops, after saving."""
    if INTERRUPTED.is_set() and not _deferring.is_set():
        raise KeyboardInterrupt


def exit_code() -> int:
    """128 + the signal's number, as a shell reports a process the signal ended: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + (_received[0] if _received else signal.SIGINT)


def signal_name() -> str:
    return signal.Signals(_received[0]).name if _received else "SIGINT"


def saved_line(done: int, total: int, out: object, unit: str = "iteration") -> str:
    """What a training run stopped by a signal prints once it has saved."""
    by = "" if signal_name() == "SIGINT" else f" ({signal_name()})"
    return f"interrupted{by} at {unit} {done} of {total}, which is saved in {out}; rerun the same command to resume"


def finished_line(total: int, out: object, unit: str = "iteration") -> str:
    """What a training run prints when the signal came during its last iteration, which it finished and saved. Not
    "nothing to resume": in `demo` and `ablate` the distillation is one stage, and their rerun goes on to the next."""
    by = "" if signal_name() == "SIGINT" else f" ({signal_name()})"
    done = f"during the last {unit}, which finished: all {total} are saved in {out}"
    return f"interrupted{by} {done}; rerun the same command to go on from there"
