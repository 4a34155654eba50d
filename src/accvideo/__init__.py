"""accvideo: distil flow-matching video diffusion models into few-step students (AccVideo)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("accvideo")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
