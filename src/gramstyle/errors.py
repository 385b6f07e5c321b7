"""The exceptions gramstyle raises for problems a user can fix.

Each message is one line that names the file or setting and the problem; the CLI prints it as it is and exits
with status 2. Anything else escaping the library is a bug.
"""

from __future__ import annotations


class GramstyleError(Exception):
    """Base of every user-facing error."""


class ImageError(GramstyleError):
    """An input image cannot be used, or an output image cannot be written."""


class SettingsError(GramstyleError, ValueError):
    """A setting has a value no run can use."""


class WeightsError(GramstyleError):
    """The VGG-19 weights cannot be found, verified or loaded."""


class OptimizationError(GramstyleError):
    """The optimization failed (a non-finite loss, or out of memory)."""
