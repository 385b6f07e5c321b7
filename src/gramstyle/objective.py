"""The objective of eq. 7, with its targets computed once and bound to the network and the weights.

`Objective(image)` returns the total loss and its terms; the optimizer only ever sees that callable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from . import losses
from .vgg import VGGFeatures, canonical_layer


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of the objective.

    ``total`` is eq. 7 (differentiable); ``content`` is sum_l c_l L_content(l) (eq. 1), ``style`` is L_style
    (eq. 5), ``tv`` the total variation, all unweighted by alpha, beta and tv_weight. ``layers`` holds each
    layer's own loss, unweighted: "content:conv4_2" -> eq. 1, "style:conv1_1" -> E_l of eq. 4.
    """

    total: Tensor
    content: Tensor
    style: Tensor
    tv: Tensor
    layers: dict[str, Tensor]

    def floats(self) -> dict[str, float]:
        values = {"total": float(self.total.detach()), "content": float(self.content.detach()),
                  "style": float(self.style.detach()),
                  "tv": float(self.tv.detach())}
        values.update({k: float(v.detach()) for k, v in self.layers.items()})
        return values


def _canonical_weights(layers: Sequence[tuple[str, float]]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for name, weight in layers:
        key = canonical_layer(name)
        weights[key] = weights.get(key, 0.0) + float(weight)
    return weights


@torch.no_grad()
def content_targets(net: VGGFeatures, image: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    """P^l of eq. 1: the content image's responses, computed once."""
    features = net(image)
    return {name: features[name].detach().clone() for name in layers}


@torch.no_grad()
def style_targets(net: VGGFeatures, images: Sequence[Tensor], layers: Sequence[str],
                  blend: Sequence[float] | None = None) -> dict[str, Tensor]:
    """A^l / M_l of eq. 4 for each style layer, blended over several style images (weights sum to 1)."""
    weights = list(blend) if blend is not None else [1.0] * len(images)
    grams: dict[str, list[Tensor]] = {name: [] for name in layers}
    for image in images:
        features = net(image)
        for name in layers:
            grams[name].append(losses.normalized_gram(features[name]))
    return {name: losses.blend_grams(grams[name], weights) for name in layers}


class Objective:
    """alpha * sum_l c_l L_content(l) + beta * sum_l w_l E_l (+ tv_weight * TV): eq. 7 with its targets bound."""

    def __init__(self, net: VGGFeatures, *, content: Mapping[str, Tensor] | None = None,
                 content_weights: Mapping[str, float] | None = None, style: Mapping[str, Tensor] | None = None,
                 style_weights: Mapping[str, float] | None = None, alpha: float = 1.0, beta: float = 1.0,
                 tv_weight: float = 0.0) -> None:
        self.net = net
        self.content = dict(content or {})
        self.content_weights = {k: w for k, w in (content_weights or {}).items() if w != 0}
        self.style = dict(style or {})
        self.style_weights = {k: w for k, w in (style_weights or {}).items() if w != 0}
        self.alpha, self.beta, self.tv_weight = alpha, beta, tv_weight

    @classmethod
    def build(cls, net: VGGFeatures, *, content_image: Tensor | None = None,
              content_layers: Sequence[tuple[str, float]] = (), style_images: Sequence[Tensor] = (),
              style_layers: Sequence[tuple[str, float]] = (), style_blend: Sequence[float] | None = None,
              alpha: float = 1.0, beta: float = 1.0, tv_weight: float = 0.0) -> Objective:
        """Compute the targets from the images once and bind them."""
        content_weights = _canonical_weights(content_layers) if content_image is not None else {}
        style_weights = _canonical_weights(style_layers) if style_images else {}
        content = content_targets(net, content_image, list(content_weights)) if content_image is not None else {}
        style = style_targets(net, style_images, list(style_weights), style_blend) if style_images else {}
        return cls(net, content=content, content_weights=content_weights, style=style,
                   style_weights=style_weights, alpha=alpha, beta=beta, tv_weight=tv_weight)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.content_weights, *self.style_weights]))

    def __call__(self, image: Tensor) -> Evaluation:
        features = self.net(image)
        zero = image.new_zeros(())
        layers: dict[str, Tensor] = {}
        content, style, tv = zero, zero, zero
        for name, weight in self.content_weights.items():
            layers[f"content:{name}"] = loss = losses.content_loss(features[name], self.content[name])
            content = content + weight * loss
        for name, weight in self.style_weights.items():
            layers[f"style:{name}"] = loss = losses.layer_style_loss(features[name], self.style[name])
            style = style + weight * loss
        if self.tv_weight:
            tv = losses.total_variation(image)
        if not layers:
            raise ValueError("the objective has no terms: give content or style layers with non-zero weights")
        total = losses.total_loss(content, style, self.alpha, self.beta) + self.tv_weight * tv
        return Evaluation(total, content, style, tv, layers)
