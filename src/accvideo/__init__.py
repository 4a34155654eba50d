"""accvideo: distil flow-matching video diffusion models into few-step students (AccVideo)."""


def __getattr__(name: str) -> str:
    """`__version__`, read from the installed metadata when asked (importlib.metadata takes ~35 ms to import, and
    the console script imports this package before it can catch a Ctrl-C: accvideo/entry.py)."""
    if name != "__version__":
        raise AttributeError(f"module 'accvideo' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("accvideo")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0.0.0+unknown"
