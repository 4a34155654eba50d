"""The console script's first module: a Ctrl-C while the command's own modules import is one line, not a traceback.

`accvideo.cli` takes 60 to 70 ms to import, before its `main` installs the handlers of core/interrupts.py; a
Ctrl-C in that window was Python's KeyboardInterrupt traceback. Nothing has started then, so nothing is saved.
After a command succeeded, Ctrl-C and SIGTERM are ignored while Python shuts down: the exit code stays 0.
"""

from __future__ import annotations

import signal
import sys


def _before_start(signum: int, frame: object) -> None:
    print("interrupted", file=sys.stderr, flush=True)  # as cli.main says it for a command stopped by Ctrl-C
    raise SystemExit(128 + signum)


def main() -> None:
    """`accvideo`: install the early handler (unless SIGINT is ignored, as in a shell's background jobs), then run
    the command line; cli.main replaces the handler with its own and restores this one when it returns."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _before_start)
    from accvideo.cli import main as cli_main

    try:
        cli_main()
    except SystemExit as exc:
        if exc.code in (0, None):
            # done and said so: Python's shutdown (torch's exit hooks, then C++ teardown, up to a second) ran with
            # the default handlers back (Python resets its own as it finalizes), so a Ctrl-C or SIGTERM there killed
            # the finished command without a line, and the shell saw 130 or 143. Ignored ones stay ignored to the end.
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)
        raise
