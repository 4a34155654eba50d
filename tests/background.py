"""Long end-to-end runs started once per test session, in the background, and shared by pytest-xdist workers.

`start(name, cmd)` launches `cmd` at most once per test session (the first caller wins an atomic mkdir), logging
to a file and recording its exit code when it ends; `wait(name)` blocks until then, from any worker. The session
is identified by pytest-xdist's run id, or by an id this module sets for a plain pytest run.

Run as a script it is the launcher: `python background.py RC_FILE LOG_FILE CMD...`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("ACCVIDEO_TEST_RUN", uuid.uuid4().hex)  # a plain run's id (workers share xdist's)


def folder(name: str) -> Path:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or os.environ["ACCVIDEO_TEST_RUN"]
    return Path(tempfile.gettempdir()) / f"accvideo-tests-{run}" / name


def start(name: str, cmd: list[str], env: dict | None = None) -> Path:
    """Launch `cmd` unless this session already has (its output folder is returned either way)."""
    out = folder(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        out.mkdir()
    except FileExistsError:
        return out  # another worker started it
    launcher = [sys.executable, __file__, str(out / "rc"), str(out / "run.log"), *cmd]
    subprocess.Popen(launcher, env={**os.environ, **(env or {})}, start_new_session=True)
    return out


def wait(name: str, cmd: list[str], env: dict | None = None, timeout: float = 900) -> Path:
    """The run's output folder once it has ended with exit code 0 (started now if nobody had)."""
    out = start(name, cmd, env)
    rc = out / "rc"
    deadline = time.monotonic() + timeout
    while not rc.is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"background run {name} did not finish in {timeout} s")
        time.sleep(0.2)
    code = int(rc.read_text())
    assert code == 0, f"background run {name} exited with {code}:\n" + (out / "run.log").read_text()[-3000:]
    return out


if __name__ == "__main__":
    rc_file, log_file, *command = sys.argv[1:]
    with open(log_file, "w") as log:  # a file, not a pipe: progress bars would fill a pipe and block the run
        code = subprocess.call(command, stdout=log, stderr=log)
    tmp = f"{rc_file}.part"
    Path(tmp).write_text(str(code))
    os.replace(tmp, rc_file)
