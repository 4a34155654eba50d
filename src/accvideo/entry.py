"""The console script's first module: a Ctrl-C while the command's own modules import is one line, not a traceback.

`accvideo.cli` takes 60 to 70 ms to import, before its `main` installs the handlers of core/interrupts.py; a
Ctrl-C in that window was Python's KeyboardInterrupt traceback. Nothing has started then, so nothing is saved.
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

    cli_main()
