"""The exceptions gramstyle raises for problems a user can fix.

Each message is one line that names the file or setting and the problem. The library never spells a front door's
name for a setting (a CLI flag, a web form's label): a message refers to settings as ``{field_name}``
placeholders, which `GramstyleError.render` fills in with the front door's own names, and ``str(error)`` with the
`Settings` field names themselves. ``error.field`` is the setting at fault, where there is one, so that a form can
show the message next to it. Anything else escaping the library is a bug.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# "{name}" is a setting; "{{" and "}}" are literal braces (file names may contain them: see `literal`).
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([a-z_][a-z0-9_]*)\}")


def literal(text: object) -> str:
    """Text (a file name, a user's value) to put in a message as it is, braces included."""
    return str(text).replace("{", "{{").replace("}", "}}")


def field_name(name: str) -> str:
    """The library's own rendering of a setting: the `Settings` field name."""
    return name


def render(template: str, name: Callable[[str], str]) -> str:
    """`template` with every ``{setting}`` replaced by ``name(setting)`` (``{{`` and ``}}`` are braces)."""
    def one(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return match.group(0)[0]
        return name(match.group(1))

    return _PLACEHOLDER.sub(one, template)


class GramstyleError(Exception):
    """Base of every user-facing error.

    ``template`` may name settings as ``{field}`` placeholders; ``field`` is the one setting at fault (or None).
    """

    def __init__(self, template: str, *, field: str | None = None) -> None:
        self.template = template
        self.field = field
        super().__init__(self.render(field_name))

    def render(self, name: Callable[[str], str]) -> str:
        """The message with every ``{setting}`` placeholder replaced by ``name(setting)``."""
        return render(self.template, name)

    def __reduce__(self) -> tuple[object, ...]:  # picklable across processes (batch workers, Ray)
        return _rebuild, (type(self), self.template, self.field)


def _rebuild(cls: type[GramstyleError], template: str, field: str | None) -> GramstyleError:
    return cls(template, field=field)


class ImageError(GramstyleError):
    """An input image cannot be used, or an output file cannot be written."""


class SettingsError(GramstyleError, ValueError):
    """A setting has a value (or a type) no run can use."""


class WeightsError(GramstyleError):
    """The VGG-19 weights cannot be found, verified or loaded."""


class OptimizationError(GramstyleError):
    """The optimization failed (a non-finite loss, or out of memory)."""


class Cancelled(GramstyleError):
    """A run was cancelled through its token before it produced an image."""
