"""The error for a missing optional dependency: what needs it and the `pip install` that brings it.

The CLI prints it as one line (exit 1) rather than a traceback, since the fix is an install.
"""

from __future__ import annotations


class MissingExtra(ImportError):
    """An optional package is not installed: `what` needs `package`, which the extra `extra` carries."""

    def __init__(self, what: str, package: str, extra: str):
        super().__init__(f"{what} needs {package}: pip install 'worldsim[{extra}]'")
        self.package, self.extra = package, extra
