"""Every default of gramstyle in one frozen, serializable settings object.

A run is fully described by a `Settings` (plus its input images and seed): the CLI builds its flags from the
fields below (their `help` metadata is the flag's help text), the Python API takes keyword overrides, and the
run record (`OUT.json`) stores `Settings.to_dict()`. Defaults follow the paper's objective; where they deviate
(initialisation, optimizer) the comment says why and the README lists it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import SettingsError

Pooling = Literal["avg", "max"]
Optimizer = Literal["lbfgs", "adam"]
Weights = str  # "caffe", "torchvision", or a path to a state dict
Preprocessing = Literal["caffe", "torchvision"]
Init = str  # "noise", "content", "style", or a path to an image
Precision = Literal["auto", "fp32", "bf16"]

def equal_weights(layers: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """Layers with w_l = 1/(number of layers), the paper's weighting of its style layers (eq. 5)."""
    return tuple((name, 1 / len(layers)) for name in layers)


#: The paper's style layers (Fig. 2, eq. 5): conv1_1 ... conv5_1 with w_l = 1/5 each.
PAPER_STYLE_LAYERS: tuple[tuple[str, float], ...] = equal_weights([f"conv{b}_1" for b in range(1, 6)])
#: The paper's content layer for transfer (Fig. 2): conv4_2.
PAPER_CONTENT_LAYERS: tuple[tuple[str, float], ...] = (("conv4_2", 1.0),)


def _opt(help_text: str, **extra: Any) -> dict[str, Any]:
    return {"help": help_text, **extra}


@dataclass(frozen=True)
class Settings:
    """Every knob of a run. Field order is the order of the CLI's help."""

    # --- the objective (eq. 7): alpha * L_content + beta * L_style -------------------------------------------
    alpha: float = field(default=1.0, metadata=_opt("content weight alpha of eq. 7"))
    # alpha/beta = 1e-3, the paper's Fig. 2 (B, C, D) ratio. Only the ratio matters to the picture; alpha = 1
    # keeps the content loss in the paper's own units (eq. 1).
    beta: float = field(default=1e3, metadata=_opt("style weight beta of eq. 7"))
    content_layers: tuple[tuple[str, float], ...] = field(
        default=PAPER_CONTENT_LAYERS,
        metadata=_opt("content layers with weights, e.g. conv4_2 or conv4_2:1,conv5_2:0.5"),
    )
    style_layers: tuple[tuple[str, float], ...] = field(
        default=PAPER_STYLE_LAYERS,
        metadata=_opt("style layers with weights w_l (eq. 5), e.g. conv1_1,conv2_1 (equal weights, summing to 1) "
                      "or conv1_1:0.5,conv2_1:0.5"),
    )
    style_blend: tuple[float, ...] | None = field(
        default=None,
        metadata=_opt("blend weights of several style images, e.g. 0.7,0.3 (normalised to sum 1; default equal)"),
    )
    preserve_color: Literal["none", "luminance", "histogram"] = field(
        default="none",
        # Gatys et al. 2016, "Preserving Color in Neural Artistic Style Transfer"; not in the 2015 paper.
        metadata=_opt("keep the content's colours: none, luminance (transfer on YIQ luminance, the content's "
                      "chroma kept) or histogram (style recoloured to the content's colour statistics first)",
                      choices=("none", "luminance", "histogram")),
    )
    color_match: Literal["pca", "chol"] = field(
        default="chol",
        # chol: from the recoloured start (--init recolored) it reached the content start's 60-step loss in
        # 55, 42 and 32 steps for The Starry Night, The Scream and The Shipwreck at 256 px; pca in 62, 41, 31.
        metadata=_opt("matrix square root of the colour matching of --preserve-color histogram and --init "
                      "recolored: pca (symmetric, eigh) or chol (Cholesky)", choices=("pca", "chol")),
    )
    content_mask: str | None = field(
        default=None,
        # Spatial control, Gatys et al. CVPR 2017 sec. 4 (guided Gram matrices); not in the 2015 paper.
        metadata=_opt("image of flat colours, one per region of the output (resized to it, nearest neighbour); "
                      "needs --style-mask"),
    )
    style_mask: tuple[str, ...] | None = field(
        default=None,
        metadata=_opt("one mask per style image, comma-separated: each region of --content-mask takes its style "
                      "from the parts of the style images painted in the same colour"),
    )
    tv_weight: float = field(
        default=0.0,
        # Not in the paper: a total-variation smoothness prior, off by default. See the README for its scale.
        metadata=_opt("total-variation weight (not in the paper; 0 = off)"),
    )

    # --- the network -------------------------------------------------------------------------------------------
    weights: Weights = field(
        default="caffe",
        metadata=_opt("VGG-19 weights: caffe (the original network), caffe-normalized (the paper's normalised "
                      "network, to which its alpha/beta values belong), torchvision (needs the optional download), "
                      "or a path to a state dict in torchvision's key layout"),
    )
    preprocessing: Preprocessing | None = field(
        default=None,
        metadata=_opt("input convention of a user weights file: caffe or torchvision",
                      choices=("caffe", "torchvision")),
    )
    pooling: Pooling = field(
        default="avg",
        # The paper replaces VGG's max pooling by average pooling ("slightly more appealing results").
        metadata=_opt("pooling: avg (the paper's choice) or max", choices=("avg", "max")),
    )

    # --- images ------------------------------------------------------------------------------------------------
    size: int = field(default=512, metadata=_opt("longest side of the output in pixels"))
    output_size: tuple[int, int] | None = field(
        default=None, metadata=_opt("width and height of a synthesized texture, e.g. 384x256 (default: the style "
                                    "image's shape at --size)")
    )
    style_size: int | None = field(
        default=None, metadata=_opt("longest side of the style image(s) in pixels (default: --size)")
    )
    style_scale: float | None = field(
        default=None, metadata=_opt("longest side of the style image(s) as a multiple of the output's: below 1 the "
                                    "network sees and transfers the painting's large structures, above 1 its fine "
                                    "brushwork (default: 1)")
    )
    scales: str | None = field(
        default=None,
        # Coarse-to-fine (Gatys et al., CVPR 2017, "Controlling Perceptual Factors", sec. 5): optimize at a low
        # resolution first, upsample, and refine with targets recomputed at each size.
        metadata=_opt("coarse-to-fine sizes, smallest first, the last equal to --size, e.g. 256,512; or auto "
                      "(halving from --size down to 256 px); --steps steps at each size"),
    )
    scale_steps: str | None = field(
        default=None,
        metadata=_opt("steps at each coarse-to-fine size, e.g. 200,100,30 for --scales 256,512,1024 (default: --steps "
                      "at each): most steps where they are cheap"),
    )
    max_pixels: int = field(
        default=100_000_000,
        metadata=_opt("refuse input images with more pixels than this, before decoding (decompression bombs)"),
    )

    # --- the optimization --------------------------------------------------------------------------------------
    init: Init = field(
        default="recolored",
        # Deviation: the paper starts from white noise. Starting from the content photo reaches a lower loss of
        # the same objective in fewer steps (291 -> 107 steps to 1.46e10 at 256 px), and starting from the photo
        # recoloured to the painting's colour statistics takes 8-48% fewer again (docs/benchmarks.md).
        # `--init noise` restores the paper.
        metadata=_opt("initial image: recolored (the content photo with the style images' colour mean and "
                      "covariance), content, noise (the paper's white noise), style, or an image file"),
    )
    optimizer: Optimizer = field(
        default="lbfgs", metadata=_opt("optimizer: lbfgs (the authors' choice) or adam", choices=("lbfgs", "adam"))
    )
    steps: int = field(default=500, metadata=_opt("number of optimizer steps (one VGG forward+backward each)"))
    lr: float | None = field(
        default=None, metadata=_opt("step size (default: 1 for lbfgs, 0.02 for adam, in [0,1] pixel units)")
    )
    history_size: int = field(default=50, metadata=_opt("L-BFGS history (number of correction pairs)"))
    seed: int = field(default=0, metadata=_opt("random seed (noise initialisation)"))
    time_limit: float | None = field(
        default=None, metadata=_opt("stop after this many seconds and keep the result so far")
    )
    device: str = field(default="auto", metadata=_opt("device: auto, cpu, cuda, cuda:N or mps"))
    precision: Precision = field(
        default="auto",
        # Not a change of the objective: the network's convolutions run in bfloat16 while the image, the
        # targets, the losses and the optimizer stay float32. On this project's 2-core AVX-512-BF16 CPU a step
        # costs 0.095 s instead of 0.19 s at 256 px, and the loss after the same time is lower, not higher, when
        # scored in float32 (docs/benchmarks.md). auto = bf16 where the processor computes it natively (CPUs
        # with AVX-512 BF16 or AMX), fp32 elsewhere (CUDA: not yet measured).
        metadata=_opt("arithmetic of the network's convolutions: auto, fp32 or bf16 (losses and image stay fp32)",
                      choices=("auto", "fp32", "bf16")),
    )

    @classmethod
    def for_task(cls, task: str) -> Settings:
        """The defaults of each of the paper's three tasks."""
        if task == "transfer":  # Fig. 2
            return cls()
        if task == "content":  # Fig. 1, top row: from white noise, content loss alone at one layer
            # fp32: a conv1_1 reconstruction reaches 45 dB, beyond bfloat16's 8 bits of mantissa.
            return cls(init="noise", beta=0.0, content_layers=(("conv4_1", 1.0),), style_layers=(),
                       precision="fp32")
        if task == "texture":  # Fig. 1, bottom row: from white noise, style loss alone
            return cls(init="noise", alpha=0.0, beta=1.0, content_layers=(), precision="fp32")
        raise SettingsError(f"unknown task {task!r}")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def validated(self) -> Settings:
        """Raise SettingsError (one line, naming the setting) for values no run could use."""
        positive = {"size": self.size, "steps": self.steps, "history_size": self.history_size,
                    "max_pixels": self.max_pixels}
        for name, value in positive.items():
            if value < 1:
                raise SettingsError(f"{_flag(name)} must be a positive integer, got {value}")
        if self.style_scale is not None:
            if not (0 < self.style_scale < float("inf")):
                raise SettingsError(f"--style-scale must be a finite number > 0, got {self.style_scale}")
            if self.style_size is not None:
                raise SettingsError("give --style-size or --style-scale, not both")
        if self.scales is not None and self.scales != "auto":
            try:
                sizes = [int(x) for x in self.scales.split(",")]
            except ValueError:
                raise SettingsError(f"--scales takes sizes such as 256,512 or auto, got {self.scales!r}") from None
            if not sizes or min(sizes) < 1 or sizes != sorted(sizes) or sizes[-1] != self.size:
                raise SettingsError(f"--scales must be increasing sizes ending at --size {self.size}, "
                                    f"got {self.scales!r}")
        if (self.content_mask is None) != (self.style_mask is None):
            raise SettingsError("--content-mask and --style-mask go together")
        if self.scale_steps is not None:
            if self.scales is None:
                raise SettingsError("--scale-steps needs --scales")
            try:
                counts = [int(x) for x in self.scale_steps.split(",")]
            except ValueError:
                raise SettingsError(f"--scale-steps takes step counts such as 200,100, got {self.scale_steps!r}") \
                    from None
            if min(counts) < 1:
                raise SettingsError(f"--scale-steps must be positive, got {self.scale_steps!r}")
        if self.output_size is not None and (len(self.output_size) != 2 or min(self.output_size) < 1):
            raise SettingsError(f"--output-size must be two positive integers, got {self.output_size}")
        if not 0 <= self.seed < 2**63:
            raise SettingsError(f"--seed must be an integer in [0, 2**63), got {self.seed}")
        if self.style_size is not None and self.style_size < 1:
            raise SettingsError(f"--style-size must be a positive integer, got {self.style_size}")
        for name in ("alpha", "beta", "tv_weight"):
            value = getattr(self, name)
            if not (value >= 0 and value != float("inf")):
                raise SettingsError(f"{_flag(name)} must be a finite number >= 0, got {value}")
        if self.lr is not None and not (0 < self.lr < float("inf")):
            raise SettingsError(f"--lr must be a finite number > 0, got {self.lr}")
        if self.time_limit is not None and not (self.time_limit > 0):
            raise SettingsError(f"--time-limit must be > 0 seconds, got {self.time_limit}")
        if self.preserve_color not in ("none", "luminance", "histogram"):
            raise SettingsError(f"--preserve-color must be none, luminance or histogram, got {self.preserve_color!r}")
        if self.color_match not in ("pca", "chol"):
            raise SettingsError(f"--color-match must be pca or chol, got {self.color_match!r}")
        if self.pooling not in ("avg", "max"):
            raise SettingsError(f"--pooling must be avg or max, got {self.pooling!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise SettingsError(f"--precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.optimizer not in ("lbfgs", "adam"):
            raise SettingsError(f"--optimizer must be lbfgs or adam, got {self.optimizer!r}")
        for name, layers in (("content_layers", self.content_layers), ("style_layers", self.style_layers)):
            for layer, weight in layers:
                if not (weight >= 0 and weight != float("inf")):
                    raise SettingsError(f"{_flag(name)}: weight of {layer} must be a finite number >= 0, got {weight}")
        if self.style_blend is not None and (
            any(not (w >= 0 and w != float("inf")) for w in self.style_blend) or sum(self.style_blend) <= 0
        ):
            raise SettingsError(f"--style-blend weights must be >= 0 with a positive sum, got {self.style_blend}")
        return self

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
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name in ("content_layers", "style_layers"):
                value = tuple((str(layer), float(weight)) for layer, weight in value)
            elif name == "style_blend" and value is not None:
                value = tuple(float(w) for w in value)
            elif name == "style_mask" and value is not None:
                value = tuple(str(v) for v in value)
            elif name == "output_size" and value is not None:
                value = (int(value[0]), int(value[1]))
            values[name] = value
        return cls(**values)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
