"""gramstyle: Gatys, Ecker & Bethge's "A Neural Algorithm of Artistic Style" (2015) on the original VGG-19.

The core, in the order data flows: `images` (files -> tensors), `vgg` (features), `losses` (the paper's
equations), `objective` (their weighted sum), `optimize` (the descent), `session` (the run), `tasks` (the
paper's three tasks). Front doors live in `gramstyle.apps`.

The names below are imported on first use (PEP 562), so that ``import gramstyle.apps.entry`` is light: the
command line installs its signal handlers before torch is imported.
"""

from __future__ import annotations

import importlib

from ._version import __version__

TYPE_CHECKING = False  # typing itself is not imported: this package's import stays a millisecond
if TYPE_CHECKING:
    from typing import Any

    from .config import Settings
    from .errors import Cancelled, GramstyleError, ImageError, OptimizationError, SettingsError, WeightsError
    from .events import CancelToken, Progress, Stage
    from .result import Result
    from .session import Session, default_session
    from .tasks import reconstruct_content, synthesize_texture, transfer

_WHERE = {
    "Settings": "config",
    "Cancelled": "errors", "GramstyleError": "errors", "ImageError": "errors", "OptimizationError": "errors",
    "SettingsError": "errors", "WeightsError": "errors",
    "CancelToken": "events", "Progress": "events", "Stage": "events",
    "Result": "result",
    "Session": "session", "default_session": "session",
    "reconstruct_content": "tasks", "synthesize_texture": "tasks", "transfer": "tasks",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        try:  # a submodule not imported yet, e.g. gramstyle.vgg
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "CancelToken",
    "Cancelled",
    "GramstyleError",
    "ImageError",
    "OptimizationError",
    "Progress",
    "Result",
    "Session",
    "Settings",
    "SettingsError",
    "Stage",
    "WeightsError",
    "__version__",
    "default_session",
    "reconstruct_content",
    "synthesize_texture",
    "transfer",
]
