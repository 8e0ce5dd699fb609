"""The project's base exception.

Every expected failure (a bad file, option, path or value that the user can fix) raises a subclass of
:class:`ParagonSRError` whose message names the file or key and what was expected. ``paragonsr`` (the CLI) prints
such errors as one ``error: ...`` line and exits with status 2 instead of showing a traceback; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["InputError", "ParagonSRError"]


class ParagonSRError(Exception):
    """Base of the project's expected errors; ``str(exc)`` is one line naming the file/key and the problem."""


class InputError(ParagonSRError, ValueError):
    """A user-supplied path, name or value is unusable (message names it and says what was expected)."""
