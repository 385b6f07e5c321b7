"""The paper's three tasks as the Python API.

- `transfer` (Fig. 2): a photo painted in the style of one or more artworks (eq. 7).
- `reconstruct_content` (Fig. 1, top): an image from white noise whose response at one layer matches (eq. 1).
- `synthesize_texture` (Fig. 1, bottom): an image from white noise whose Gram matrices match (eq. 5).

Each takes `Settings` (default: the task's) and keyword overrides of its fields, an event callback and a
cancel token, and runs in a `Session` (default: the process's shared one, which keeps the network).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .checkpoint import Checkpointer
from .config import Settings, equal_weights
from .errors import SettingsError, literal
from .events import Callback, CancelToken
from .layers import canonical_layer
from .result import Result
from .session import ImageLike, Session, default_session

#: A checkpoint to continue from: its path or its loaded dict (`Session.run`'s ``resume``; ``checkpoint`` there
#: is a `gramstyle.checkpoint.Checkpointer` that writes them).
Resume = str | os.PathLike[str] | dict[str, Any]


def task_settings(task: str, settings: Settings | None, overrides: dict[str, Any]) -> Settings:
    """`settings` (default: the task's defaults) with keyword overrides, checked by name."""
    if settings is not None and not isinstance(settings, Settings):
        raise SettingsError(f"settings must be a gramstyle.Settings, got {type(settings).__name__}")
    base = settings if settings is not None else Settings.for_task(task)
    return base.replace(**overrides) if overrides else base


def transfer(content: ImageLike, style: ImageLike | Sequence[ImageLike], *, settings: Settings | None = None,
             callback: Callback | None = None, cancel: CancelToken | None = None, session: Session | None = None,
             checkpoint: Checkpointer | None = None, resume: Resume | None = None,
             **overrides: Any) -> Result:
    """Paint ``content`` in the style of ``style`` (one image or several, blended): the paper's Fig. 2.

    Keyword overrides are `Settings` fields, e.g. ``transfer(photo, painting, size=256, steps=200)``.
    """
    if style is None:
        raise SettingsError("give at least one style image")
    chosen = task_settings("transfer", settings, overrides)
    return (session or default_session()).run("transfer", chosen, content=content, styles=style, callback=callback,
                                              cancel=cancel,
                                              checkpoint=checkpoint, resume=resume)


def reconstruct_content(image: ImageLike, *, layer: str = "conv4_1", settings: Settings | None = None,
                        callback: Callback | None = None, cancel: CancelToken | None = None,
                        session: Session | None = None, checkpoint: Checkpointer | None = None,
                        resume: Resume | None = None, **overrides: Any) -> Result:
    """Reconstruct ``image`` from white noise through its response at one layer alone: the paper's Fig. 1, top."""
    chosen = task_settings("content", settings, {"content_layers": ((_layer(layer), 1.0),), **overrides})
    return (session or default_session()).run("content", chosen, content=image, callback=callback, cancel=cancel,
                                              checkpoint=checkpoint, resume=resume)


def synthesize_texture(style: ImageLike | Sequence[ImageLike], *,
                       layers: Sequence[str] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
                       settings: Settings | None = None, callback: Callback | None = None,
                       cancel: CancelToken | None = None, session: Session | None = None,
                       checkpoint: Checkpointer | None = None, resume: Resume | None = None,
                       **overrides: Any) -> Result:
    """Synthesize a texture from white noise matching the Gram matrices of ``layers`` with w_l = 1/|layers|:
    the paper's style reconstructions (Fig. 1, bottom)."""
    if style is None:
        raise SettingsError("give at least one style image")
    if isinstance(layers, str):
        layers = [layers]
    names = [_layer(name) for name in layers]
    if not names:
        raise SettingsError("give at least one style layer", field="style_layers")
    chosen = task_settings("texture", settings, {"style_layers": equal_weights(names), **overrides})
    return (session or default_session()).run("texture", chosen, styles=style, callback=callback, cancel=cancel,
                                              checkpoint=checkpoint, resume=resume)


def _layer(name: Any) -> str:
    if not isinstance(name, str):
        raise SettingsError(f"a layer name must be a text such as conv4_1, got {literal(repr(name))}")
    return canonical_layer(name)
