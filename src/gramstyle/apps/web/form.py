"""The studio's form, generated from `Settings`' metadata (the same source as the CLI's flags), and the checks
of the settings a client sends."""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from collections.abc import Mapping
from typing import Any

from ... import assets, config
from ...config import Settings
from ...errors import SettingsError, literal, render

#: Bundled images a client may name instead of uploading (content_sample, style_sample).
SAMPLES = {path.stem: path for path in assets.REFERENCE_IMAGES}
#: Settings the studio decides itself: files on the server are named by the studio, never by a client (a path
#: in a setting would let a page read any image, or unpickle any file, on the server); the worker picks the device.
SERVER_ONLY = ("content_mask", "style_mask", "device")
#: `init` takes these words from a client; an image file only through "continue from" (a previous result).
INIT_WORDS = ("recolored", "content", "noise", "style")
#: `weights` takes these names from a client, never a path.
WEIGHTS = ("caffe", "caffe-normalized", "torchvision")
#: The style strength slider's range of alpha/beta (log scale).
RATIO_RANGE = (1e-7, 1e-1)

_HINTS = typing.get_type_hints(Settings)


def label(name: str) -> str:
    """A setting's name on the page: its form label, else its field name in words."""
    for f in dataclasses.fields(Settings):
        if f.name == name:
            return str(f.metadata.get("label") or name.replace("_", " "))
    return name.replace("_", " ")


def _kind(name: str) -> tuple[str, bool]:
    hint = _HINTS[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if config.choices(name) is not None:
        return "choice", optional
    if hint is int:
        return "int", optional
    if hint is float:
        return "float", optional
    if hint is str:
        return "text", optional
    return "list", optional  # layers, blend weights, sizes: typed as text, parsed by config.parse_field


def _default_text(value: Any) -> Any:
    if isinstance(value, tuple):
        if value and isinstance(value[0], tuple):
            return ",".join(f"{layer}:{weight:g}" for layer, weight in value)
        return ",".join(str(v) for v in value)
    return value


def schema() -> dict[str, Any]:
    """The form: every setting a client may set, with its label, help, kind, choices and default."""
    defaults = Settings()
    fields = []
    for f in dataclasses.fields(Settings):
        if f.name in SERVER_ONLY:
            continue
        kind, optional = _kind(f.name)
        choices = config.choices(f.name)
        if f.name == "weights":
            kind, choices = "choice", WEIGHTS
        if f.name == "init":
            kind, choices = "choice", INIT_WORDS
        fields.append({
            "name": f.name, "label": label(f.name), "help": render(config.field_help(f.name), label),
            "kind": kind, "optional": optional, "choices": list(choices) if choices else None,
            "default": _default_text(getattr(defaults, f.name)), "basic": bool(f.metadata.get("basic")),
        })
    return {
        "fields": fields,
        "ratio": {"label": "style strength", "min": RATIO_RANGE[0], "max": RATIO_RANGE[1],
                  "default": defaults.alpha / defaults.beta,
                  "help": "the content-to-style ratio alpha/beta of eq. 7 (log scale): further right, more style"},
        "samples": {"content": ["tubingen"], "style": [n for n in SAMPLES if n != "tubingen"]},
    }


def settings_from(data: Any) -> Settings:
    """Validated settings from a client's JSON: `Settings` field names, with text for list-like fields (parsed as
    the CLI parses its flags) and ``ratio`` (alpha/beta, setting beta); SettingsError naming the field."""
    if not isinstance(data, Mapping):
        raise SettingsError(f"settings must be a JSON object of setting names to values, got {type(data).__name__}")
    values = dict(data)
    ratio = values.pop("ratio", None)
    config.check_names(values)
    defaults = Settings()
    for name in SERVER_ONLY:
        if name in values and values[name] != getattr(defaults, name):
            raise SettingsError(f"{{{name}}} is not available in the studio", field=name)
        values.pop(name, None)
    for name, value in list(values.items()):
        if isinstance(value, str) and _kind(name)[0] in ("list", "int", "float"):
            values[name] = config.parse_field(name, value)
        elif isinstance(value, str) and value.strip() == "" and _kind(name)[1]:
            values[name] = None
    if "init" in values and values["init"] not in INIT_WORDS:
        raise SettingsError(f"{{init}} must be one of {', '.join(INIT_WORDS)} (or continue from a result), got "
                            f"{literal(repr(values['init']))}", field="init")
    if "weights" in values and values["weights"] not in WEIGHTS:
        raise SettingsError(f"{{weights}} must be one of {', '.join(WEIGHTS)}, got "
                            f"{literal(repr(values['weights']))}", field="weights")
    if ratio is not None:
        usable = isinstance(ratio, numbers.Real) and not isinstance(ratio, bool)
        if not usable or not (float(ratio) > 0 and math.isfinite(ratio)):
            raise SettingsError(f"style strength must be a finite number > 0, got {literal(repr(ratio))}",
                                field="ratio")
        alpha = values.get("alpha", Settings().alpha)
        if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
            values["beta"] = float(alpha) / float(ratio)
    return Settings.from_dict(values)
