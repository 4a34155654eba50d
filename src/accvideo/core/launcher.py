"""A torchrun worker stops when its launcher is gone.

torchrun starts its workers in their own session, so a launcher killed with SIGKILL (or one that crashed) cannot
stop them: they would wait out the start-up timeout in the rendezvous, up to an hour, or train on as orphans behind
a launch the user believes stopped. `watch_launcher` notices the worker's parent change and stops the worker. It
imports nothing heavy, so the CLI starts it before torch loads (the launcher may die during those seconds too).
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time

LAUNCHER_GONE = threading.Event()  # set when this worker's launcher is gone (the CLI's interrupted line says so)
_started: list[threading.Thread] = []


def launcher_gone_line() -> str:
    """What a worker whose launcher is gone prints as it stops."""
    return (
        f"interrupted: the torchrun launcher is gone, so this worker (rank {os.environ.get('RANK', '?')}) stopped; "
        "rerun the same command to resume"
    )


def watch_launcher(interval: float = 1.0, grace: float = 10.0) -> threading.Thread | None:
    """Under torchrun (TORCHELASTIC_RUN_ID set), watch this process's parent from a daemon thread; once per process.

    When the parent changes (the launcher is gone), the main thread gets a KeyboardInterrupt, the CLI's interrupted
    path, where the run's writers keep nothing half-written. A main thread inside a C++ call that does not return
    to Python (the rendezvous waits in one) is ended after `grace` seconds with the same line: every writer renames
    whole files into place, so nothing kept is damaged, and the rerun resumes. None when not under torchrun.
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    if _started:
        return _started[0]
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        LAUNCHER_GONE.set()
        _thread.interrupt_main(signal.SIGINT)
        time.sleep(grace)
        sys.stderr.write(f"{launcher_gone_line()}\n")
        sys.stderr.flush()
        os._exit(130)

    _started.append(threading.Thread(target=watch, name="accvideo-launcher-watch", daemon=True))
    _started[0].start()
    return _started[0]
