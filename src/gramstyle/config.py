"""Every default of gramstyle in one frozen, serializable settings object, and its one validation.

A run is fully described by a `Settings` (plus its input images): the CLI builds its flags from the fields below
(their ``help`` metadata is the flag's help text, their ``parse`` the flag's parser), the web form its fields,
batch its ``--axis`` values, the Python API takes keyword overrides, and the run record (``OUT.json``) stores
`Settings.to_dict()`. Defaults follow the paper's objective; where they deviate (initialisation, optimizer,
precision) the comment says why and the README lists it.

`Settings.validated` is the one check every front door calls: it takes any value of any type and either returns
normalised settings or raises `SettingsError` naming the field. Per-field rules (type, range, choices) live in
the field's metadata; only the rules that relate two fields are written out.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import SettingsError, literal
from .layers import MIN_SIDE, canonical_layer

Pooling = Literal["avg", "max"]
Optimizer = Literal["lbfgs", "adam"]
LbfgsScaling = Literal["color", "diagonal", "scalar"]
Preprocessing = Literal["caffe", "torchvision"]
Precision = Literal["auto", "fp32", "bf16"]
Convolution = Literal["auto", "direct", "winograd"]
PreserveColor = Literal["none", "luminance", "histogram"]
ColorMatch = Literal["pca", "chol"]
LayerWeights = tuple[tuple[str, float], ...]


def equal_weights(layers: Sequence[str]) -> LayerWeights:
    """Layers with w_l = 1/(number of layers), the paper's weighting of its style layers (eq. 5)."""
    return tuple((name, 1 / len(layers)) for name in layers)


#: The paper's style layers (Fig. 2, eq. 5): conv1_1 ... conv5_1 with w_l = 1/5 each.
PAPER_STYLE_LAYERS: LayerWeights = equal_weights([f"conv{b}_{1}" for b in range(1, 6)])
#: The quick start's size and steps (`Settings.for_task("demo")`).
DEMO_SIZE, DEMO_STEPS = 384, 100
#: The paper's content layer for transfer (Fig. 2): conv4_2.
PAPER_CONTENT_LAYERS: LayerWeights = (("conv4_2", 1.0),)


# --- per-field rules: each returns the problem in words, or None ---------------------------------------------

Check = Callable[[Any], "str | None"]


def _positive(value: Any) -> str | None:
    return None if value >= 1 else "must be a positive integer"


def _at_least(low: int) -> Check:
    return lambda value: None if value >= low else f"must be at least {low}"


def _finite_nonnegative(value: Any) -> str | None:
    return None if value >= 0 and math.isfinite(value) else "must be a finite number >= 0"


def _finite_positive(value: Any) -> str | None:
    return None if value > 0 and math.isfinite(value) else "must be a finite number > 0"


def _seed(value: Any) -> str | None:
    return None if 0 <= value < 2**63 else "must be an integer in [0, 2**63)"


def _layer_weights_check(value: LayerWeights) -> str | None:
    for layer, weight in value:
        if not (weight >= 0 and math.isfinite(weight)):
            return f"the weight of {layer} must be a finite number >= 0, got {weight}"
    return None


def _blend_check(value: tuple[float, ...]) -> str | None:
    if not value or any(not (w >= 0 and math.isfinite(w)) for w in value) or sum(value) <= 0:
        return "weights must be finite, >= 0, with a positive sum"
    return None


def _tile_check(value: str) -> str | None:
    if value in ("auto", "off") or (value.isdigit() and int(value) >= 16 and int(value) % 16 == 0):
        return None
    return "must be auto, off or the tiles' side in pixels, a multiple of 16 such as 512"


def _output_size_check(value: tuple[int, int]) -> str | None:
    return None if min(value) >= MIN_SIDE else f"each side must be at least {MIN_SIDE} px"


# --- text parsers (CLI flags, web form fields, batch axes): each raises ValueError with a one-line reason --------

def parse_layer_weights(text: str, *, equal_split: bool) -> LayerWeights:
    """'conv1_1,conv2_1' (weights equal; they sum to 1 if `equal_split`, else 1 each) or 'conv4_2:1,conv5_2:0.5'."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError("expected at least one layer, e.g. conv4_2")
    pairs = []
    for item in items:
        name, _, weight = item.partition(":")
        try:
            layer = canonical_layer(name)
        except SettingsError as exc:
            raise ValueError(str(exc)) from None
        if weight:
            try:
                value = float(weight)
            except ValueError:
                raise ValueError(f"bad weight {weight!r} for {name}") from None
        else:
            value = 1.0 / len(items) if equal_split else 1.0
        pairs.append((layer, value))
    return tuple(pairs)


def parse_floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


def parse_width_height(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    try:
        if sep:
            return int(width), int(height)
    except ValueError:
        pass
    raise ValueError(f"expected WIDTHxHEIGHT such as 512x384, got {text!r}")


def parse_names(text: str) -> tuple[str, ...]:
    return tuple(p for p in text.split(",") if p)


def _opt(help_text: str, *, check: Check | None = None, parse: Callable[[str], Any] | None = None,
         label: str | None = None, basic: bool = False) -> dict[str, Any]:
    """Field metadata: ``help`` (the flag's and the form's help), ``check`` (a per-field rule), ``parse`` (text ->
    value, where the field is not a plain number or string), ``label`` (a form's name for it), ``basic`` (shown
    outside "more" in the web studio)."""
    meta: dict[str, Any] = {"help": help_text, "basic": basic}
    if check is not None:
        meta["check"] = check
    if parse is not None:
        meta["parse"] = parse
    if label is not None:
        meta["label"] = label
    return meta


@dataclass(frozen=True)
class Settings:
    """Every knob of a run. Field order is the order of the CLI's help."""

    # --- the objective (eq. 7): alpha * L_content + beta * L_style -------------------------------------------
    alpha: float = field(default=1.0, metadata=_opt("content weight alpha of eq. 7", check=_finite_nonnegative))
    # alpha/beta = 1e-3, the paper's Fig. 2 (B, C, D) ratio. Only the ratio matters to the picture; alpha = 1
    # keeps the content loss in the paper's own units (eq. 1).
    beta: float = field(default=1e3, metadata=_opt("style weight beta of eq. 7", check=_finite_nonnegative))
    content_layers: LayerWeights = field(
        default=PAPER_CONTENT_LAYERS,
        metadata=_opt("content layers with weights, e.g. conv4_2 or conv4_2:1,conv5_2:0.5",
                      check=_layer_weights_check, parse=lambda t: parse_layer_weights(t, equal_split=False)),
    )
    style_layers: LayerWeights = field(
        default=PAPER_STYLE_LAYERS,
        metadata=_opt("style layers with weights w_l (eq. 5), e.g. conv1_1,conv2_1 (equal weights, summing to 1) "
                      "or conv1_1:0.5,conv2_1:0.5", check=_layer_weights_check,
                      parse=lambda t: parse_layer_weights(t, equal_split=True)),
    )
    style_blend: tuple[float, ...] | None = field(
        default=None,
        metadata=_opt("blend weights of several style images, e.g. 0.7,0.3 (normalised to sum 1; default equal)",
                      check=_blend_check, parse=parse_floats, basic=True, label="blend weights"),
    )
    preserve_color: PreserveColor = field(
        default="none",
        # Gatys et al. 2016, "Preserving Color in Neural Artistic Style Transfer"; not in the 2015 paper.
        metadata=_opt("keep the content's colours: none, luminance (transfer on YIQ luminance, the content's "
                      "chroma kept) or histogram (style recoloured to the content's colour statistics first)",
                      basic=True, label="preserve colour"),
    )
    color_match: ColorMatch = field(
        default="chol",
        # chol: from the recoloured start (init recolored) it reached the content start's 60-step loss in
        # 55, 42 and 32 steps for The Starry Night, The Scream and The Shipwreck at 256 px; pca in 62, 41, 31.
        metadata=_opt("matrix square root of the colour matching of {preserve_color} histogram and {init} "
                      "recolored: pca (symmetric, eigh) or chol (Cholesky)"),
    )
    content_mask: str | None = field(
        default=None,
        # Spatial control, Gatys et al. CVPR 2017 sec. 4 (guided Gram matrices); not in the 2015 paper.
        metadata=_opt("image of flat colours, one per region of the output (resized to it, nearest neighbour); "
                      "needs {style_mask}"),
    )
    style_mask: tuple[str, ...] | None = field(
        default=None,
        metadata=_opt("one mask per style image, comma-separated: each region of the content mask takes its "
                      "style from the parts of the style images painted in the same colour", parse=parse_names),
    )
    tv_weight: float = field(
        default=0.0,
        # Not in the paper: a total-variation smoothness prior, off by default. See the README for its scale.
        metadata=_opt("total-variation weight (not in the paper; 0 = off)", check=_finite_nonnegative),
    )

    # --- the network -------------------------------------------------------------------------------------------
    weights: str = field(
        default="caffe",
        metadata=_opt("VGG-19 weights: caffe (the original network), caffe-normalized (the paper's normalised "
                      "network, to which its alpha/beta values belong), torchvision (needs the optional download), "
                      "or a path to a state dict in torchvision's key layout"),
    )
    preprocessing: Preprocessing | None = field(
        default=None, metadata=_opt("input convention of a user weights file: caffe or torchvision"),
    )
    pooling: Pooling = field(
        default="avg",
        # The paper replaces VGG's max pooling by average pooling ("slightly more appealing results").
        metadata=_opt("pooling: avg (the paper's choice) or max"),
    )

    # --- images ------------------------------------------------------------------------------------------------
    size: int = field(default=512, metadata=_opt("longest side of the output in pixels", check=_at_least(MIN_SIDE),
                                                 basic=True, label="size"))
    output_size: tuple[int, int] | None = field(
        default=None, metadata=_opt("width and height of a synthesized texture, e.g. 384x256 (default: the style "
                                    "image's shape at {size})", check=_output_size_check,
                                    parse=parse_width_height)
    )
    style_size: int | None = field(
        default=None, metadata=_opt("longest side of the style image(s) in pixels (default: {size})",
                                    check=_at_least(MIN_SIDE))
    )
    style_scale: float | None = field(
        default=None, metadata=_opt("longest side of the style image(s) as a multiple of the output's: below 1 the "
                                    "network sees and transfers the painting's large structures, above 1 its fine "
                                    "brushwork (default: 1)", check=_finite_positive, basic=True,
                                    label="style scale")
    )
    scales: str | None = field(
        default=None,
        # Coarse-to-fine (Gatys et al., CVPR 2017, "Controlling Perceptual Factors", sec. 5): optimize at a low
        # resolution first, upsample, and refine with targets recomputed at each size.
        metadata=_opt("coarse-to-fine sizes, smallest first, the last equal to {size} (which they set when "
                      "{size} is not given), e.g. 256,512; or auto (halving from {size} down to 256 px); "
                      "{steps} steps at each size"),
    )
    scale_steps: str | None = field(
        default=None,
        metadata=_opt("steps at each coarse-to-fine size, e.g. 200,100,30 for {scales} 256,512,1024 (default: "
                      "{steps} at each): most steps where they are cheap"),
    )
    max_pixels: int = field(
        default=100_000_000,
        metadata=_opt("refuse input images with more pixels than this, before decoding (decompression bombs)",
                      check=_positive),
    )

    # --- the optimization --------------------------------------------------------------------------------------
    init: str = field(
        default="recolored",
        # Deviation: the paper starts from white noise. Starting from the content photo reaches a lower loss of
        # the same objective in fewer steps, and starting from the photo recoloured to the painting's colour
        # statistics takes fewer again (docs/benchmarks.md). init "noise" restores the paper.
        metadata=_opt("initial image: recolored (the content photo with the style images' colour mean and "
                      "covariance), content, noise (the paper's white noise), style, or an image file",
                      basic=True, label="start from"),
    )
    optimizer: Optimizer = field(
        default="lbfgs", metadata=_opt("optimizer: lbfgs (the authors' choice) or adam"),
    )
    steps: int = field(default=500, metadata=_opt("number of optimizer steps (one VGG forward+backward each)",
                                                  check=_positive, basic=True, label="steps"))
    lbfgs_scaling: LbfgsScaling = field(
        default="color",
        # Deviation from the textbook L-BFGS (not from the paper's objective): a per-pixel diagonal initial
        # inverse Hessian took 10-21% fewer steps to pastiche's race loss and turned the convergence matrix's one
        # cell behind Adam (256 px, alpha/beta 0.1) into a lead; mixing each pixel's colours by the gradient's
        # channel covariance ("color") took fewer on the slowest race pair, as many on the others, and kept the
        # matrix's cells at or below Adam (docs/benchmarks.md). scalar restores the textbook.
        metadata=_opt("initial inverse Hessian of L-BFGS: color (diagonal, and each pixel's colours mixed by the "
                      "inverse square root of the gradient's recent colour covariance), diagonal (each pixel "
                      "scaled by the inverse square root of its recent squared gradient, as Adam does) or scalar "
                      "(Nocedal & Wright's gamma I)"),
    )
    lr: float | None = field(
        default=None, metadata=_opt("step size (default: 1 for lbfgs, 0.02 for adam, in [0,1] pixel units)",
                                    check=_finite_positive)
    )
    history_size: int = field(default=50, metadata=_opt("L-BFGS history (number of correction pairs)",
                                                        check=_positive))
    seed: int = field(default=0, metadata=_opt("random seed (noise initialisation)", check=_seed))
    time_limit: float | None = field(
        default=None, metadata=_opt("stop after this many seconds and keep the result so far",
                                    check=_finite_positive, basic=True, label="time limit (s)")
    )
    device: str = field(default="auto", metadata=_opt("device: auto, cpu, cuda, cuda:N or mps"))
    precision: Precision = field(
        default="auto",
        # Not a change of the objective: the network's convolutions run in bfloat16 while the image, the
        # targets, the losses and the optimizer stay float32. auto = bf16 where the processor computes it
        # natively (CPUs with AVX-512 BF16 or AMX), fp32 elsewhere (CUDA: not yet measured); emulated bf16
        # is many times slower than fp32 (docs/benchmarks.md).
        metadata=_opt("arithmetic of the network's convolutions: auto, fp32 or bf16 (losses and image stay fp32)"),
    )
    convolution: Convolution = field(
        default="auto",
        # Not a change of the objective: the targets and the final losses are computed directly; only the
        # optimizer's evaluations take Winograd's route, with a relative error of about 1e-4 on the gradient.
        # auto = winograd for float32 on CPUs whose widest vectors are AVX2, in untiled stages of at least
        # 25,000 pixels (tiles stay direct and exact; at 128 x 96 it gained about 5%), where a step measured
        # 0.8 times the direct one at 256 x 192 (docs/benchmarks.md, "Winograd convolutions").
        metadata=_opt("how the CPU computes the network's 3x3 convolutions in fp32: auto, direct (oneDNN) or "
                      "winograd (Winograd's F(6x6, 3x3) by NNPACK for large maps and F(4x4, 3x3) for the deep "
                      "layers: fewer multiplications, about 1e-4 relative error on the gradient)"),
    )
    tile: str = field(
        default="auto",
        # Exact, not an approximation: the style loss reads all positions only through Gram sums, so a first pass
        # sums them tile by tile and a second back-propagates each tile's part of eq. 6 (gramstyle.tiling). The
        # loss and gradient equal the untiled ones up to the order of summation; tiles cost extra computation
        # where they overlap, so auto tiles only when the untiled run would not fit the memory available.
        metadata=_opt("evaluate the network tile by tile (exact; for large images): auto (only when the untiled "
                      "run would not fit the memory available), off, or the tiles' side in px (a multiple of 16)",
                      check=_tile_check),
    )

    @classmethod
    def for_task(cls, task: str) -> Settings:
        """The defaults of each of the paper's three tasks."""
        if task == "transfer":  # Fig. 2
            return cls()
        if task == "demo":  # the quick start: transfer on the bundled images, sized to finish in minutes
            # Chosen by measurement (docs/benchmarks.md): under 3 minutes on a 2-core AVX2 CPU in fp32, under
            # a minute where bf16 is native; transfer's own defaults (512 px, 500 steps) give the best picture.
            return cls(size=DEMO_SIZE, steps=DEMO_STEPS)
        if task == "content":  # Fig. 1, top row: from white noise, content loss alone at one layer
            # fp32: a conv1_1 reconstruction reaches 45 dB, beyond bfloat16's 8 bits of mantissa.
            return cls(init="noise", beta=0.0, content_layers=(("conv4_1", 1.0),), style_layers=(),
                       precision="fp32")
        if task == "texture":  # Fig. 1, bottom row: from white noise, style loss alone
            return cls(init="noise", alpha=0.0, beta=1.0, content_layers=(), precision="fp32")
        raise SettingsError(f"unknown task {literal(repr(task))}; use transfer, demo, content or texture")

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes`; an unknown name is refused with the nearest setting's name.

        Coarse-to-fine sizes given without a size set it: ``replace(scales="64,128")`` means size 128.
        """
        check_names(changes)
        if changes.get("scales") not in (None, "auto") and "size" not in changes:
            last = str(changes["scales"]).split(",")[-1].strip()
            if last.isdigit():
                changes = {**changes, "size": int(last)}
        return dataclasses.replace(self, **changes)

    def validated(self) -> Settings:
        """These settings with every value checked and normalised (ints as floats where a float is meant, lists
        as tuples, layer names canonical), or SettingsError naming the setting and the problem."""
        values = {f.name: _check_field(f, getattr(self, f.name)) for f in dataclasses.fields(self)}
        checked = dataclasses.replace(self, **values)
        checked._check_relations()
        return checked

    def _check_relations(self) -> None:
        """The rules that relate two settings."""
        if self.style_scale is not None and self.style_size is not None:
            raise SettingsError("give {style_size} or {style_scale}, not both", field="style_scale")
        if self.scales is not None and self.scales != "auto":
            try:
                sizes = [int(x) for x in self.scales.split(",")]
            except ValueError:
                raise SettingsError(f"{{scales}} takes sizes such as 256,512 or auto, got {literal(repr(self.scales))}",
                                    field="scales") from None
            if not sizes or min(sizes) < MIN_SIDE or sizes != sorted(sizes) or sizes[-1] != self.size:
                raise SettingsError(f"{{scales}} must be increasing sizes of at least {MIN_SIDE} px ending at the "
                                    f"{{size}} {self.size}, got {literal(repr(self.scales))}", field="scales")
        if (self.content_mask is None) != (self.style_mask is None):
            raise SettingsError("{content_mask} and {style_mask} go together",
                                field="style_mask" if self.style_mask is None else "content_mask")
        if self.scale_steps is not None:
            if self.scales is None:
                raise SettingsError("{scale_steps} needs {scales}", field="scale_steps")
            try:
                counts = [int(x) for x in self.scale_steps.split(",")]
            except ValueError:
                raise SettingsError(f"{{scale_steps}} takes step counts such as 200,100, got "
                                    f"{literal(repr(self.scale_steps))}", field="scale_steps") from None
            if min(counts) < 1:
                raise SettingsError(f"{{scale_steps}} must be positive, got {literal(repr(self.scale_steps))}",
                                    field="scale_steps")

    @property
    def step_size(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1.0 if self.optimizer == "lbfgs" else 0.02

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists); `from_dict` inverts it."""
        data: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(self)))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Settings | None = None) -> Settings:
        """Settings from JSON-like values (lists for tuples), over `base` (default: the defaults), validated."""
        if not isinstance(data, Mapping):
            raise SettingsError(f"settings must be a mapping of setting names to values, got {type(data).__name__}")
        return (base or cls()).replace(**dict(data)).validated()


def check_names(changes: Mapping[str, Any]) -> None:
    """Refuse names that are not settings, naming the nearest one."""
    known = [f.name for f in dataclasses.fields(Settings)]
    for name in changes:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
            hint = f"; did you mean {{{close[0]}}}?" if close else ""
            raise SettingsError(f"unknown setting {literal(repr(name))}{hint}", field=str(name) if close else None)


def parse_field(name: str, text: str) -> Any:
    """A setting's value from text, as a user types it in a flag, a form or a batch axis (then `validated`)."""
    check_names({name: text})
    f = _FIELDS[name]
    kind, optional = _kind(_HINTS[name])
    if optional and text.strip().lower() in ("", "none"):
        return None
    try:
        if "parse" in f.metadata:
            return f.metadata["parse"](text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError as exc:
        what = {int: "an integer", float: "a number"}.get(kind)  # type: ignore[call-overload]
        message = f"expected {what}, got {text!r}" if what else str(exc)
        raise SettingsError(f"{{{name}}}: {literal(message)}", field=name) from None
    return text


def choices(name: str) -> tuple[str, ...] | None:
    """The values a setting takes, from its Literal type (None: not a choice)."""
    kind, _ = _kind(_HINTS[name])
    return kind if isinstance(kind, tuple) else None


def field_help(name: str) -> str:
    return str(_FIELDS[name].metadata.get("help", ""))


# --- the per-field check -------------------------------------------------------------------------------------

_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_HINTS = typing.get_type_hints(Settings)


def _kind(hint: Any) -> tuple[Any, bool]:
    """(the type, or a tuple of Literal choices; whether None is allowed) of a field's annotation."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint), optional
    return hint, optional


def _describe(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # e.g. an int of more digits than Python converts to text
        text = f"<{type(value).__name__}>"
    return literal(text if len(text) <= 60 else text[:57] + "...")


def _check_field(f: dataclasses.Field[Any], value: Any) -> Any:
    name = f.name
    kind, optional = _kind(_HINTS[name])
    if value is None:
        if optional:
            return None
        raise SettingsError(f"{{{name}}} must be given, got None", field=name)
    try:
        normal = _normalise(name, kind, value)
        check = f.metadata.get("check")
        problem = check(normal) if check is not None else None
    except (ArithmeticError, ValueError, TypeError) as exc:  # SettingsError is a ValueError: passed on as it is
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"{{{name}}} cannot use {_describe(value)} ({type(value).__name__}): "
                            f"{literal(type(exc).__name__)}", field=name) from None
    if problem:
        raise SettingsError(f"{{{name}}} {problem}, got {_describe(value)}", field=name)
    return normal


def _normalise(name: str, kind: Any, value: Any) -> Any:
    """`value` converted to the field's type without loss, or SettingsError."""
    def wrong(what: str) -> SettingsError:
        return SettingsError(f"{{{name}}} must be {what}, got {_describe(value)} ({type(value).__name__})",
                             field=name)

    if isinstance(kind, tuple):  # a choice
        if not isinstance(value, str) or value not in kind:
            raise wrong("one of " + ", ".join(kind))
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise wrong("an integer")
        try:
            return int(value)
        except (OverflowError, ValueError, TypeError):
            raise wrong("an integer") from None
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise wrong("a number")
        try:
            return float(value)
        except (OverflowError, ValueError, TypeError):  # an int beyond float's range, an odd Real
            raise wrong("a number in float's range") from None
    if kind is str:
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise wrong("a non-empty text")
        return value
    if name in ("content_layers", "style_layers"):
        pairs = _sequence(value, wrong, "(layer, weight) pairs such as (('conv4_2', 1.0),)")
        out = []
        for pair in pairs:
            if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise wrong("(layer, weight) pairs such as (('conv4_2', 1.0),)")
            layer, weight = pair
            try:
                layer = canonical_layer(layer)
            except SettingsError as exc:
                raise SettingsError(f"{{{name}}}: {exc.template}", field=name) from None
            if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
                raise wrong("(layer, weight) pairs with numeric weights")
            out.append((layer, float(weight)))
        return tuple(out)
    if name == "style_blend":
        items = _sequence(value, wrong, "a sequence of numbers such as (0.7, 0.3)")
        if any(isinstance(w, bool) or not isinstance(w, numbers.Real) for w in items):
            raise wrong("a sequence of numbers such as (0.7, 0.3)")
        return tuple(float(w) for w in items)
    if name == "style_mask":
        items = _sequence(value, wrong, "a sequence of file names")
        if not items or any(not isinstance(p, str) or not p for p in items):
            raise wrong("a sequence of file names")
        return tuple(items)
    if name == "output_size":
        items = _sequence(value, wrong, "(width, height)")
        if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in items):
            raise wrong("(width, height) in whole pixels")
        return (int(items[0]), int(items[1]))
    raise AssertionError(f"no rule for the setting {name}")  # pragma: no cover - every field has one above


def _sequence(value: Any, wrong: Callable[[str], SettingsError], what: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise wrong(what)
    return list(value)
