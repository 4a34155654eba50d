"""The one exception type a user sees: a one-line message that names the fix."""


class AccVideoError(Exception):
    """Bad input or an unusable environment; the CLI prints the message and exits with code 2."""
