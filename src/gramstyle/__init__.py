"""gramstyle: Gatys, Ecker & Bethge's "A Neural Algorithm of Artistic Style" (2015) on the original VGG-19."""

from ._version import __version__
from .config import Settings
from .errors import GramstyleError, ImageError, OptimizationError, SettingsError, WeightsError
from .optimize import Progress
from .stylize import Result, reconstruct_content, synthesize_texture, transfer

__all__ = [
    "GramstyleError",
    "ImageError",
    "OptimizationError",
    "Progress",
    "Result",
    "Settings",
    "SettingsError",
    "WeightsError",
    "__version__",
    "reconstruct_content",
    "synthesize_texture",
    "transfer",
]
