"""gramstyle: Gatys, Ecker & Bethge's "A Neural Algorithm of Artistic Style" (2015) on the original VGG-19.

The core, in the order data flows: `images` (files -> tensors), `vgg` (features), `losses` (the paper's
equations), `objective` (their weighted sum), `optimize` (the descent), `session` (the run), `tasks` (the
paper's three tasks). Front doors live in `gramstyle.apps`.
"""

from ._version import __version__
from .config import Settings
from .errors import Cancelled, GramstyleError, ImageError, OptimizationError, SettingsError, WeightsError
from .events import CancelToken, Progress, Stage
from .result import Result
from .session import Session, default_session
from .tasks import reconstruct_content, synthesize_texture, transfer

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
