"""stdout and stderr that never stop a command: a reader that went away (`| head`, a closed `| tee`), a log file on
a full disk (`> /full/disk/log.txt`: its "no space left" was taken for --out's) and a path that the terminal's
encoding cannot show.

A print to a pipe whose reader had exited raised BrokenPipeError: a traceback and exit 1 from whatever line came
next (a sample's "wrote" line after the clip was written, a refusal's `error:` line, `--help`). Once a stream's
reader is gone, what it would have shown goes nowhere and the command goes on to its own exit code. A path of
bytes that are no UTF-8 (held as surrogates) raised UnicodeEncodeError on a strict UTF-8 stream
(PYTHONIOENCODING=utf-8, as Docker images set it) after the file was written; it is shown escaped instead.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# what a write to stdout or stderr may meet when the output has nowhere to go: its reader gone (EPIPE), or the file
# or device it is redirected to full (`> /full/disk/log.txt`, /dev/full: ENOSPC, EDQUOT, EFBIG) or failing (EIO)
NOWHERE = {errno.EPIPE, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


class _Guarded:
    """A text stream whose writes and flushes cannot raise for want of somewhere to go (NOWHERE); everything else is
    the stream's."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except OSError as exc:
                if exc.errno not in NOWHERE:
                    raise
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except OSError as exc:
                if exc.errno not in NOWHERE:
                    raise
                self._drop()

    def _drop(self) -> None:
        """From now on write nothing; point the descriptor at /dev/null, so that Python's last flush of the stream
        as it exits does not print "Exception ignored ... BrokenPipeError" either."""
        self._gone = True
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, self._stream.fileno())
            finally:
                os.close(null)
        except (OSError, ValueError, AttributeError):  # a stream with no descriptor (a test's capture): nothing to do
            pass

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _escaping(stream) -> None:
    try:
        stream.reconfigure(errors="backslashreplace")
    except (AttributeError, ValueError, OSError):  # no TextIOWrapper, or a closed stream
        pass


@contextmanager
def guarded_streams() -> Iterator[None]:
    """sys.stdout and sys.stderr guarded for the duration (put back after, as a test calls main again)."""
    before = sys.stdout, sys.stderr
    for stream in before:
        if stream is not None:
            _escaping(stream)
    guarded = [_Guarded(s) if s is not None else s for s in before]
    sys.stdout, sys.stderr = guarded
    try:
        yield
    finally:
        for stream in guarded:  # what is still buffered: Python's own flush at exit would fail on it (exit 120)
            if stream is not None:
                stream.flush()
        sys.stdout, sys.stderr = before
