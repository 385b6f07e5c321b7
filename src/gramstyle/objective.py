"""The objective of eq. 7 as an open, weighted sum of named terms, with their targets computed once.

A term is a function of the network's responses and the image (content: eq. 1, style: eq. 4-5, total
variation; the temporal loss of video is one more). `Objective(image)` evaluates every term once, from one pass
of the network through the union of their layers, and returns the weighted total and each term by name; the
optimizer only ever sees that callable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from . import losses
from .config import Settings
from .layers import canonical_layer, layer_info
from .vgg import VGGFeatures

#: Terms every evaluation reports, as 0 when the objective has no such term (the run record's columns).
PAPER_TERMS = ("content", "style", "tv")


class Term(Protocol):
    """One summand of the objective before its weight: a name, the layers it reads, its value."""

    @property
    def name(self) -> str: ...

    @property
    def layers(self) -> tuple[str, ...]:
        """VGG-19 layers (paper names) whose responses the term reads; () for none."""
        ...

    def __call__(self, features: Mapping[str, Tensor], image: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The term's value and its parts by name (e.g. "style:conv1_1" -> E_l), all unweighted."""
        ...


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of the objective: ``total`` (differentiable), each term unweighted by name, and each
    layer's own loss ("content:conv4_2" -> eq. 1, "style:conv1_1" -> E_l of eq. 4)."""

    total: Tensor
    terms: dict[str, Tensor]
    layers: dict[str, Tensor] = field(default_factory=dict)

    def term(self, name: str) -> Tensor:
        return self.terms[name] if name in self.terms else self.total.new_zeros(())

    @property
    def content(self) -> Tensor:
        return self.term("content")

    @property
    def style(self) -> Tensor:
        return self.term("style")

    @property
    def tv(self) -> Tensor:
        return self.term("tv")

    def floats(self) -> dict[str, float]:
        values = {"total": float(self.total.detach())}
        values.update({name: float(self.term(name).detach()) for name in PAPER_TERMS})
        values.update({k: float(v.detach()) for k, v in self.terms.items()})
        values.update({k: float(v.detach()) for k, v in self.layers.items()})
        return values


def canonical_weights(layers: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Layer weights by paper name, zero weights dropped, repeated layers summed."""
    weights: dict[str, float] = {}
    for name, weight in layers:
        key = canonical_layer(name)
        weights[key] = weights.get(key, 0.0) + float(weight)
    return {k: w for k, w in weights.items() if w != 0}


# --- the paper's terms -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ContentTerm:
    """sum_l c_l L_content(l) (eq. 1 per layer) against the content image's responses P^l."""

    targets: dict[str, Tensor]
    weights: dict[str, float]
    name: str = "content"

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def __call__(self, features: Mapping[str, Tensor], image: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        # P^l comes from the same network, so it has the responses' (channels-last) layout
        per_layer = {name: losses.content_loss(features[name], self.targets[name]) for name in self.weights}
        return losses.weighted_sum(per_layer, self.weights), {f"content:{k}": v for k, v in per_layer.items()}


@dataclass(frozen=True)
class StyleTerm:
    """L_style of eq. 5 over E_l of eq. 4, against targets A^l / M_l; with guides, the guided E_l of spatial
    control (CVPR 2017, sec. 4) per region."""

    targets: dict[str, Tensor]
    weights: dict[str, float]
    guides: dict[str, Tensor] | None = None  # per layer: the output's guidance channels (R x h x w)
    region_weights: Tensor | None = None
    name: str = "style"

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def __call__(self, features: Mapping[str, Tensor], image: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        per_layer = {}
        for name in self.weights:
            if self.guides is not None and self.region_weights is not None:
                per_layer[name] = losses.guided_style_loss(features[name], self.guides[name], self.targets[name],
                                                           self.region_weights)
            else:
                per_layer[name] = losses.layer_style_loss(features[name], self.targets[name])
        return losses.style_loss(per_layer, self.weights), {f"style:{k}": v for k, v in per_layer.items()}


@dataclass(frozen=True)
class TotalVariationTerm:
    """Not in the paper: the total variation of the image (a smoothness prior)."""

    name: str = "tv"
    layers: tuple[str, ...] = ()

    def __call__(self, features: Mapping[str, Tensor], image: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return losses.total_variation(image), {}


# --- targets -----------------------------------------------------------------------------------------------------

@torch.no_grad()
def content_targets(net: VGGFeatures, image: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    """P^l of eq. 1: the content image's responses, computed once."""
    features = net(image, layers)
    return {name: features[name].detach().clone() for name in layers}


@torch.no_grad()
def style_targets(net: VGGFeatures, images: Sequence[Tensor], layers: Sequence[str],
                  blend: Sequence[float] | None) -> dict[str, Tensor]:
    """A^l / M_l of eq. 4 for each style layer, blended over several style images (weights sum to 1)."""
    weights = list(blend) if blend is not None else [1.0] * len(images)
    grams: dict[str, list[Tensor]] = {name: [] for name in layers}
    for image in images:
        features = net(image, layers)
        for name in layers:
            grams[name].append(losses.normalized_gram(features[name]))
    return {name: losses.blend_grams(grams[name], weights) for name in layers}


@dataclass(frozen=True)
class Guidance:
    """Spatial control (Gatys et al., CVPR 2017, sec. 4): R regions of the output, each with its own style.

    ``output`` holds the output's guidance channels (R x H x W, in [0, 1]); ``styles`` one such tensor per style
    image, marking where in that image each region's style comes from (all zero where it does not take part).
    """

    output: Tensor
    styles: list[Tensor]


def propagate_guide(guide: Tensor, layer: str) -> Tensor:
    """A guidance channel at a layer's resolution: the 2x2 average pooling of each of VGG's pooling layers before
    it (the CVPR 2017 paper's simple propagation; conv layers keep the size)."""
    x = guide.unsqueeze(0) if guide.dim() == 3 else guide
    stride = layer_info(layer).stride
    while stride > 1:
        x = torch.nn.functional.avg_pool2d(x, 2)
        stride //= 2
    return x[0]


@torch.no_grad()
def guided_style_targets(net: VGGFeatures, images: Sequence[Tensor], guidance: Guidance, layers: Sequence[str],
                         blend: Sequence[float] | None) -> dict[str, Tensor]:
    """A_r for every region r and layer: guided Gram matrices of the style images' marked parts, blended over
    the images in which the region appears."""
    weights = list(blend) if blend is not None else [1.0] * len(images)
    regions = guidance.output.shape[0]
    features = [net(image, layers) for image in images]
    targets: dict[str, Tensor] = {}
    for name in layers:
        guides = [propagate_guide(g, name) for g in guidance.styles]
        per_region = []
        for r in range(regions):
            grams, used = [], []
            for k, feats in enumerate(features):
                guide = guides[k][r]
                if float(guide.sum()) > 0 and weights[k] > 0:
                    grams.append(losses.guided_gram(feats[name], guide))
                    used.append(weights[k])
            per_region.append(losses.blend_grams(grams, used))
        targets[name] = torch.stack(per_region)
    return targets


def style_term(net: VGGFeatures, images: Sequence[Tensor], layer_weights: Mapping[str, float],
               blend: Sequence[float] | None, guidance: Guidance | None) -> StyleTerm:
    """The style term with its targets from `images` (guided when there is `guidance`)."""
    weights, names = dict(layer_weights), list(layer_weights)
    if guidance is None:
        return StyleTerm(style_targets(net, images, names, blend), weights)
    area = guidance.output.flatten(1).sum(1)
    return StyleTerm(guided_style_targets(net, images, guidance, names, blend), weights,
                     guides={name: propagate_guide(guidance.output, name) for name in names},
                     region_weights=area / area.sum())


# --- the objective -------------------------------------------------------------------------------------------

class Objective:
    """sum_k weight_k term_k(features, image): eq. 7 when the terms are content (alpha) and style (beta)."""

    def __init__(self, net: VGGFeatures, terms: Sequence[tuple[Term, float]],
                 precision: torch.dtype = torch.float32, winograd: bool = False) -> None:
        self.net = net
        self.precision = precision
        self.winograd = winograd  # the large convolutions by Winograd (`gramstyle.vgg.winograd`), except exact
        self.terms = [(term, float(weight)) for term, weight in terms if weight != 0]
        if not self.terms:
            raise ValueError("the objective has no terms: give content or style layers with non-zero weights")
        names = [term.name for term, _ in self.terms]
        if len(set(names)) != len(names):
            raise ValueError(f"two terms share a name: {names}")
        self.weights = {term.name: weight for term, weight in self.terms}
        self.layers = tuple(dict.fromkeys(layer for term, _ in self.terms for layer in term.layers))

    @classmethod
    def build(cls, net: VGGFeatures, *, content_image: Tensor | None, content_layers: Sequence[tuple[str, float]],
              style_images: Sequence[Tensor], style_layers: Sequence[tuple[str, float]],
              style_blend: Sequence[float] | None, alpha: float, beta: float, tv_weight: float,
              guidance: Guidance | None = None, precision: torch.dtype = torch.float32,
              winograd: bool = False) -> Objective:
        """The paper's objective (eq. 7, plus the optional total variation), targets computed from the images
        once, always in float32 and directly (they are the objective; ``precision`` and ``winograd`` are how
        the network computes when it evaluates an image)."""
        terms: list[tuple[Term, float]] = []
        content_weights = canonical_weights(content_layers)
        if content_image is not None and content_weights and alpha:
            terms.append((ContentTerm(content_targets(net, content_image, list(content_weights)), content_weights),
                          alpha))
        style_weights = canonical_weights(style_layers)
        if style_images and style_weights and beta:
            terms.append((style_term(net, style_images, style_weights, style_blend, guidance), beta))
        if tv_weight:
            terms.append((TotalVariationTerm(), tv_weight))
        return cls(net, terms, precision, winograd)

    @classmethod
    def for_settings(cls, net: VGGFeatures, settings: Settings, *, content_image: Tensor | None,
                     style_images: Sequence[Tensor], guidance: Guidance | None = None,
                     precision: torch.dtype = torch.float32, winograd: bool = False) -> Objective:
        """`build` with the objective's settings (weights, layers, blend) taken from `settings`."""
        return cls.build(net, content_image=content_image, content_layers=settings.content_layers,
                         style_images=style_images, style_layers=settings.style_layers,
                         style_blend=settings.style_blend, alpha=settings.alpha, beta=settings.beta,
                         tv_weight=settings.tv_weight, guidance=guidance, precision=precision, winograd=winograd)

    def with_term(self, term: Term, weight: float) -> Objective:
        """This objective plus one more weighted term (e.g. video's temporal loss)."""
        return Objective(self.net, [*self.terms, (term, weight)], self.precision, self.winograd)

    def features(self, image: Tensor, exact: bool = False) -> dict[str, Tensor]:
        """The network's responses, in the objective's precision and convolutions (float32 and direct with
        ``exact``).

        In reduced precision only the network and the products of the Gram matrices run in it (see
        `VGGFeatures.forward`, `losses.layer_style_loss`); the targets stay float32, so the differences of
        nearly equal numbers in eq. 1 and eq. 4 are formed in float32, and the optimizer sees float32 losses
        and gradients. Casting the image and the losses to bfloat16 too stalls L-BFGS within a step: pixel
        updates below bfloat16's spacing (2^-9 near 0.5) vanish and the loss moves in steps of 0.4%, so the
        line search finds no decrease (docs/benchmarks.md).
        """
        if not self.layers:
            return {}
        if exact:
            return dict(self.net(image, self.layers, torch.float32))
        features: dict[str, Tensor] = self.net(image, self.layers, self.precision, winograd=self.winograd)
        return features

    def __call__(self, image: Tensor, exact: bool = False) -> Evaluation:
        """The weighted total at ``image``; ``exact`` evaluates the network in float32 whatever the precision."""
        features = self.features(image, exact)
        values: dict[str, Tensor] = {}
        parts: dict[str, Tensor] = {}
        for term, _ in self.terms:
            values[term.name], term_parts = term(features, image)
            parts.update(term_parts)
        return Evaluation(losses.total_loss(values, self.weights), values, parts)
