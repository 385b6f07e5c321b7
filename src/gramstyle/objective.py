"""The objective of eq. 7, with its targets computed once and bound to the network and the weights.

`Objective(image)` returns the total loss and its terms; the optimizer only ever sees that callable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from . import losses
from .vgg import VGGFeatures, canonical_layer, layer_info


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
                         blend: Sequence[float] | None = None) -> dict[str, Tensor]:
    """A_r for every region r and layer: guided Gram matrices of the style images' marked parts, blended over
    the images in which the region appears."""
    weights = list(blend) if blend is not None else [1.0] * len(images)
    regions = guidance.output.shape[0]
    features = [net(image) for image in images]
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


class Objective:
    """alpha * sum_l c_l L_content(l) + beta * sum_l w_l E_l (+ tv_weight * TV): eq. 7 with its targets bound."""

    def __init__(self, net: VGGFeatures, *, content: Mapping[str, Tensor] | None = None,
                 content_weights: Mapping[str, float] | None = None, style: Mapping[str, Tensor] | None = None,
                 style_weights: Mapping[str, float] | None = None, alpha: float = 1.0, beta: float = 1.0,
                 tv_weight: float = 0.0, guidance: Guidance | None = None,
                 precision: torch.dtype = torch.float32) -> None:
        self.net = net
        self.precision = precision
        self.content = dict(content or {})
        self.content_weights = {k: w for k, w in (content_weights or {}).items() if w != 0}
        self.style = dict(style or {})
        self.style_weights = {k: w for k, w in (style_weights or {}).items() if w != 0}
        self.alpha, self.beta, self.tv_weight = alpha, beta, tv_weight
        # Spatial control: the output's guidance channels at each style layer and the regions' shares.
        self.guides = ({name: propagate_guide(guidance.output, name) for name in self.style_weights}
                       if guidance is not None else {})
        if guidance is not None:
            area = guidance.output.flatten(1).sum(1)
            self.region_weights = area / area.sum()

    @classmethod
    def build(cls, net: VGGFeatures, *, content_image: Tensor | None = None,
              content_layers: Sequence[tuple[str, float]] = (), style_images: Sequence[Tensor] = (),
              style_layers: Sequence[tuple[str, float]] = (), style_blend: Sequence[float] | None = None,
              alpha: float = 1.0, beta: float = 1.0, tv_weight: float = 0.0,
              guidance: Guidance | None = None, precision: torch.dtype = torch.float32) -> Objective:
        """Compute the targets from the images once and bind them (always in float32: they are the objective;
        ``precision`` is the arithmetic of the network when it evaluates an image)."""
        content_weights = _canonical_weights(content_layers) if content_image is not None else {}
        style_weights = _canonical_weights(style_layers) if style_images else {}
        content = content_targets(net, content_image, list(content_weights)) if content_image is not None else {}
        if guidance is not None and style_images:
            style = guided_style_targets(net, style_images, guidance, list(style_weights), style_blend)
        else:
            style = style_targets(net, style_images, list(style_weights), style_blend) if style_images else {}
        return cls(net, content=content, content_weights=content_weights, style=style,
                   style_weights=style_weights, alpha=alpha, beta=beta, tv_weight=tv_weight, guidance=guidance,
                   precision=precision)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.content_weights, *self.style_weights]))

    def features(self, image: Tensor, exact: bool = False) -> dict[str, Tensor]:
        """The network's responses, in the objective's precision (float32 with ``exact``).

        In reduced precision only the network and the products of the Gram matrices run in it (see
        `VGGFeatures.forward`, `losses.layer_style_loss`); the targets stay float32, so the differences of
        nearly equal numbers in eq. 1 and eq. 4 are formed in float32, and the optimizer sees float32 losses
        and gradients. Casting the image and the losses to bfloat16 too stalls L-BFGS within a step: pixel
        updates below bfloat16's spacing (2^-9 near 0.5) vanish and the loss moves in steps of 0.4%, so the
        line search finds no decrease (docs/benchmarks.md).
        """
        features: dict[str, Tensor] = self.net(image, torch.float32 if exact else self.precision)
        return features

    def __call__(self, image: Tensor, exact: bool = False) -> Evaluation:
        """Eq. 7 at ``image``; ``exact`` evaluates the network in float32 whatever the objective's precision."""
        features = self.features(image, exact)
        zero = image.new_zeros(())
        layers: dict[str, Tensor] = {}
        content, style, tv = zero, zero, zero
        for name, weight in self.content_weights.items():
            # P^l comes from the same network, so it has the responses' (channels-last) layout
            layers[f"content:{name}"] = loss = losses.content_loss(features[name], self.content[name])
            content = content + weight * loss
        for name, weight in self.style_weights.items():
            if self.guides:
                loss = losses.guided_style_loss(features[name], self.guides[name], self.style[name],
                                                self.region_weights)
            else:
                loss = losses.layer_style_loss(features[name], self.style[name])
            layers[f"style:{name}"] = loss
            style = style + weight * loss
        if self.tv_weight:
            tv = losses.total_variation(image)
        if not layers:
            raise ValueError("the objective has no terms: give content or style layers with non-zero weights")
        total = losses.total_loss(content, style, self.alpha, self.beta) + self.tv_weight * tv
        return Evaluation(total, content, style, tv, layers)
