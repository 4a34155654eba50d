"""matplotlib for the PNG reports: the Agg backend, and a config folder it can write.

Where HOME is read-only or absent (containers, cluster jobs), or MPLCONFIGDIR names a folder that cannot be written,
matplotlib prints two warning lines on every run and rebuilds its font cache in a fresh temporary folder each time;
one folder of this user's under the temporary directory serves instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    given = os.environ.get("MPLCONFIGDIR")  # a folder it cannot write is worked around too, not warned about
    config = Path(given) if given else Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "matplotlib"
    if not _writable(config):
        fallback = Path(tempfile.gettempdir()) / f"accvideo-matplotlib-{os.getuid()}"
        if _writable(fallback):
            os.environ["MPLCONFIGDIR"] = str(fallback)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
