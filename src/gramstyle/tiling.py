"""Exact tiled evaluation of the objective: the loss and gradient of eq. 7 at the memory of one tile.

The style loss depends on all positions only through the Gram matrices, which are sums over positions, and eq. 6
makes the gradient at each position depend on the global G only through the constant D = G/M - A. So one
evaluation is two passes over tiles of the image:

1. without gradients, each tile adds the Gram sums of its *interior* positions to each style layer's G (and its
   interior's part of eq. 1 to the content loss); the interiors partition every layer's positions exactly, so the
   sums are the untiled G and loss;
2. with gradients, each tile back-propagates a surrogate whose gradient on its interior positions is eq. 6 with
   the global D (plus eq. 2 for content); the input gradients of the tiles are summed.

A tile's interior features equal the untiled ones when the tile extends past its interior by the one-sided reach
of the deepest layer used, (receptive field - stride) / 2, rounded up to 16 px: adjacent tiles then overlap by at
least the receptive field. Tile windows start on multiples of 16 px, so VGG's four 2x2 poolings group the same
pixels in a tile as in the image; a tile that touches the image's border keeps the network's own zero padding
there (it is never padded artificially), and a tile's cut edges are far enough from its interior that the
padding there never reaches it. Total variation and image-only terms are evaluated on the whole image (three
channels: no memory to save).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from . import losses
from .errors import SettingsError
from .layers import INDEX, canonical_layer, layer_info
from .objective import ContentTerm, Evaluation, Objective, StyleTerm, Term, TotalVariationTerm
from .vgg import VGGFeatures
from .vgg.winograd import WORKSPACE_PER_VALUE
from .vgg.winograd import filter_bytes as winograd_filter_bytes

#: Tile windows start on multiples of this (VGG's four poolings before conv5_1 downsample 16x).
ALIGN = 16


def align_for(layers: Sequence[str]) -> int:
    """The alignment that keeps every pooling before `layers` grouping the same pixels (32 with pool5)."""
    return max(ALIGN, *(layer_info(name).stride for name in layers))


def margin_for(layers: Sequence[str]) -> int:
    """How far a tile's window extends past its interior: the one-sided reach of the deepest layer's receptive
    field, (field - stride) / 2, rounded up to the alignment (conv5_1: 70 -> 80 px)."""
    deepest = layer_info(max(layers, key=lambda name: INDEX[layer_info(name).name]))
    align = align_for(layers)
    reach = (deepest.receptive_field - deepest.stride) // 2
    return -(-reach // align) * align


@dataclass(frozen=True)
class Tile:
    """A window of the image the network sees (pixels, [top, bottom) x [left, right)) and the interior it
    contributes (pixels, inside the window; its bounds are multiples of the alignment or the image's edge)."""

    window: tuple[int, int, int, int]  # top, bottom, left, right
    interior: tuple[int, int, int, int]

    def crop(self, image: Tensor) -> Tensor:
        top, bottom, left, right = self.window
        return image[..., top:bottom, left:right]

    def local(self, stride: int) -> tuple[slice, slice]:
        """The interior's positions in the tile's own map of a layer of this stride."""
        top, _, left, _ = self.window
        it, ib, il, ir = self.interior
        return slice((it - top) // stride, (ib - top) // stride), slice((il - left) // stride, (ir - left) // stride)

    def positions(self, stride: int) -> tuple[slice, slice]:
        """The interior's positions in the untiled map of a layer of this stride (floor(H/s) rows in all)."""
        it, ib, il, ir = self.interior
        return slice(it // stride, ib // stride), slice(il // stride, ir // stride)


def _bounds(length: int, tile: int) -> list[tuple[int, int]]:
    return list(itertools.pairwise([*range(0, length, tile), length]))


def plan(shape: tuple[int, int], tile: int, layers: Sequence[str]) -> list[Tile]:
    """The tiles of an image of `shape` (height, width) with interiors of `tile` px (a multiple of the
    alignment), row by row."""
    align = align_for(layers)
    if tile < align or tile % align:
        raise SettingsError(f"{{tile}} must be a multiple of {align} px, got {tile}", field="tile")
    margin = margin_for(layers)
    height, width = shape
    tiles = []
    for top, bottom in _bounds(height, tile):
        for left, right in _bounds(width, tile):
            window = (max(0, top - margin), min(height, bottom + margin),
                      max(0, left - margin), min(width, right + margin))
            tiles.append(Tile(window, (top, bottom, left, right)))
    return tiles


def _rows(features: Tensor, rows: slice, cols: slice) -> Tensor:
    """F^T (positions x channels) of the positions (rows, cols) of a (1, N, h, w) map."""
    n = features.shape[1]
    return features[:, :, rows, cols].permute(0, 2, 3, 1).reshape(-1, n)


def _positions(shape: tuple[int, int], stride: int) -> tuple[int, int]:
    height, width = shape
    for _ in range(int(math.log2(stride))):  # each pooling floors
        height, width = height // 2, width // 2
    return height, width


class _InteriorStyle(torch.autograd.Function):
    """A surrogate of zero value whose gradient with respect to F^T (interior positions x N) is eq. 6 with the
    global D = G/M - A: dE_l/dF = D F / (N^2 M), M the untiled map's positions."""

    @staticmethod
    def forward(ctx: Any, ft: Tensor, diff: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(ft, diff)
        ctx.scale = scale
        return ft.new_zeros((), dtype=diff.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:
        ft, diff = ctx.saved_tensors
        return torch.mm(ft, diff.to(ft.dtype)).mul_(grad.to(ft.dtype) * ctx.scale), None, None


# --- tiled targets ------------------------------------------------------------------------------------------

def _tile_features(net: VGGFeatures, image: Tensor, tiles: Sequence[Tile], layers: Sequence[str],
                   precision: torch.dtype) -> Iterator[tuple[Tile, dict[str, Tensor]]]:
    for tile in tiles:
        yield tile, net(tile.crop(image), layers, precision)


@torch.no_grad()
def content_targets(net: VGGFeatures, image: Tensor, layers: Sequence[str], tile: int) -> dict[str, Tensor]:
    """P^l of eq. 1, assembled from the tiles' interiors (equal to `objective.content_targets`)."""
    shape = (image.shape[2], image.shape[3])
    tiles = plan(shape, tile, layers)
    out: dict[str, Tensor] = {}
    for t, features in _tile_features(net, image, tiles, layers, torch.float32):
        for name in layers:
            info = layer_info(name)
            f = features[name]
            if name not in out:
                out[name] = f.new_zeros((1, f.shape[1], *_positions(shape, info.stride))).contiguous(
                    memory_format=torch.channels_last)
            rows, cols = t.positions(info.stride)
            lr, lc = t.local(info.stride)
            out[name][:, :, rows, cols] = f[:, :, lr, lc]
    return out


@torch.no_grad()
def gram_sums(net: VGGFeatures, image: Tensor, layers: Sequence[str], tile: int,
              precision: torch.dtype = torch.float32, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """G^l of eq. 3 (not normalised) of every layer, summed over the tiles' interiors."""
    shape = (image.shape[2], image.shape[3])
    sums: dict[str, Tensor] = {}
    for t, features in _tile_features(net, image, plan(shape, tile, layers), layers, precision):
        for name in layers:
            ft = _rows(features[name], *t.local(layer_info(name).stride))
            gram = (ft.t() @ ft).to(dtype or (image.dtype if precision == torch.float32 else torch.float32))
            sums[name] = sums[name] + gram if name in sums else gram
    return sums


def style_targets(net: VGGFeatures, images: Sequence[Tensor], layers: Sequence[str],
                  blend: Sequence[float] | None, tile: int) -> dict[str, Tensor]:
    """A^l / M_l of eq. 4 (`objective.style_targets`), each style image's Grams summed over tiles."""
    weights = list(blend) if blend is not None else [1.0] * len(images)
    grams: dict[str, list[Tensor]] = {name: [] for name in layers}
    for image in images:
        shape = (image.shape[2], image.shape[3])
        sums = gram_sums(net, image, layers, tile)
        for name in layers:
            h, w = _positions(shape, layer_info(name).stride)
            grams[name].append(sums[name] / (h * w))
    return {name: losses.blend_grams(grams[name], weights) for name in layers}


# --- the tiled objective -------------------------------------------------------------------------------------

class TiledObjective:
    """An `Objective` evaluated tile by tile: ``__call__`` gives the loss (the first pass only, no gradient),
    ``value_and_grad`` the loss and its gradient with respect to the image (both passes), equal to the untiled
    objective's up to the order of summation."""

    def __init__(self, objective: Objective, tile: int) -> None:
        for term, _ in objective.terms:
            if isinstance(term, StyleTerm) and term.guides is not None:
                raise SettingsError("spatial control ({content_mask}) is not tiled yet; give {tile} off or a "
                                    "smaller {size}", field="tile")
            if not isinstance(term, (ContentTerm, StyleTerm, TotalVariationTerm)) and term.layers:
                raise SettingsError(f"the term {term.name!r} reads VGG layers and cannot be tiled; give {{tile}} off",
                                    field="tile")
        self.objective, self.tile = objective, tile
        self.net, self.precision, self.layers = objective.net, objective.precision, objective.layers

    @classmethod
    def build(cls, net: VGGFeatures, tile: int, *, content_image: Tensor | None,
              content_weights: Mapping[str, float], style_images: Sequence[Tensor],
              style_weights: Mapping[str, float], style_blend: Sequence[float] | None, alpha: float, beta: float,
              tv_weight: float, precision: torch.dtype = torch.float32) -> TiledObjective:
        """`Objective.build` with its targets computed tile by tile too (weights by canonical layer name)."""
        terms: list[tuple[Term, float]] = []
        if content_image is not None and content_weights and alpha:
            names = list(content_weights)
            terms.append((ContentTerm(content_targets(net, content_image, names, tile), dict(content_weights)),
                          alpha))
        if style_images and style_weights and beta:
            names = list(style_weights)
            terms.append((StyleTerm(style_targets(net, style_images, names, style_blend, tile), dict(style_weights)),
                          beta))
        if tv_weight:
            terms.append((TotalVariationTerm(), tv_weight))
        return cls(Objective(net, terms, precision), tile)

    def with_term(self, term: Term, weight: float) -> TiledObjective:
        return TiledObjective(self.objective.with_term(term, weight), self.tile)

    @property
    def weights(self) -> dict[str, float]:
        return self.objective.weights

    def _first_pass(self, image: Tensor, precision: torch.dtype) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The untiled Gram sums of every style layer and content losses of every content layer."""
        grams: dict[str, Tensor] = {}
        content: dict[str, Tensor] = {}
        shape = (image.shape[2], image.shape[3])
        wanted = [name for term, _ in self.objective.terms if isinstance(term, (ContentTerm, StyleTerm))
                  for name in term.layers]
        if not wanted:
            return grams, content
        with torch.no_grad():
            for t, features in _tile_features(self.net, image, plan(shape, self.tile, self.layers), self.layers,
                                              precision):
                for term, _ in self.objective.terms:
                    for name in term.layers:
                        stride = layer_info(name).stride
                        f = features[name][:, :, t.local(stride)[0], t.local(stride)[1]]
                        if isinstance(term, StyleTerm):
                            ft = _rows(f, slice(None), slice(None))
                            target = term.targets[name]
                            gram = (ft.t() @ ft).to(target.dtype)
                            grams[name] = grams[name] + gram if name in grams else gram
                        elif isinstance(term, ContentTerm):
                            rows, cols = t.positions(stride)
                            part = losses.content_loss(f, term.targets[name][:, :, rows, cols])
                            content[name] = content[name] + part if name in content else part
        return grams, content

    def _evaluate(self, image: Tensor, exact: bool) -> tuple[Evaluation, dict[str, Tensor]]:
        precision = torch.float32 if exact else self.precision
        grams, content = self._first_pass(image.detach(), precision)
        shape = (image.shape[2], image.shape[3])
        values: dict[str, Tensor] = {}
        parts: dict[str, Tensor] = {}
        diffs: dict[str, Tensor] = {}
        for term, _ in self.objective.terms:
            if isinstance(term, StyleTerm):
                per_layer = {}
                for name in term.weights:
                    h, w = _positions(shape, layer_info(name).stride)
                    diffs[name] = grams[name] / (h * w) - term.targets[name]
                    n = diffs[name].shape[0]
                    per_layer[name] = diffs[name].pow(2).sum() / (4 * n * n)
                values[term.name] = losses.style_loss(per_layer, term.weights)
                parts.update({f"style:{k}": v for k, v in per_layer.items()})
            elif isinstance(term, ContentTerm):
                values[term.name] = losses.weighted_sum(content, term.weights)
                parts.update({f"content:{k}": v for k, v in content.items()})
            else:  # image-only terms (total variation): untiled
                values[term.name], term_parts = term({}, image)
                parts.update(term_parts)
        return Evaluation(losses.total_loss(values, self.objective.weights), values, parts), diffs

    def __call__(self, image: Tensor, exact: bool = False) -> Evaluation:
        """The loss at `image` (no gradient through the network's terms)."""
        return self._evaluate(image, exact)[0]

    def value_and_grad(self, image: Tensor) -> tuple[Evaluation, Tensor]:
        """The loss at `image` and its gradient with respect to the image, tile by tile."""
        x = image.detach()
        evaluation, diffs = self._evaluate(x, exact=False)
        grad = torch.zeros_like(x)
        local = [(term, weight) for term, weight in self.objective.terms if isinstance(term, (ContentTerm, StyleTerm))]
        if local:
            shape = (x.shape[2], x.shape[3])
            for t in plan(shape, self.tile, self.layers):
                crop = t.crop(x).detach().requires_grad_(True)
                features = self.net(crop, self.layers, self.precision)
                surrogate: list[Tensor] = []
                for term, weight in local:
                    for name, layer_weight in term.weights.items():
                        stride = layer_info(name).stride
                        rows, cols = t.local(stride)
                        f = features[name][:, :, rows, cols]
                        if isinstance(term, StyleTerm):
                            n = diffs[name].shape[0]
                            h, w = _positions(shape, stride)
                            scale = weight * layer_weight / (n * n * h * w)
                            surrogate.append(_InteriorStyle.apply(  # type: ignore[no-untyped-call]
                                _rows(f, slice(None), slice(None)), diffs[name], scale))
                        else:
                            target = term.targets[name][:, :, t.positions(stride)[0], t.positions(stride)[1]]
                            surrogate.append(weight * layer_weight * losses.content_loss(f, target))
                (part,) = torch.autograd.grad(torch.stack([s.to(x.dtype) for s in surrogate]).sum(), crop)
                top, bottom, left, right = t.window
                grad[..., top:bottom, left:right] += part
                del features, part, surrogate
        image_terms = [(term, weight) for term, weight in self.objective.terms
                       if not isinstance(term, (ContentTerm, StyleTerm))]
        if image_terms:
            y = x.detach().requires_grad_(True)
            total = torch.stack([weight * term({}, y)[0] for term, weight in image_terms]).sum()
            (part,) = torch.autograd.grad(total, y)
            grad += part
        return evaluation, grad


# --- the memory preflight ------------------------------------------------------------------------------------

_GIB = 2**30
#: Tile sides `auto` tries, largest first (the overlap's extra work shrinks as tiles grow).
AUTO_TILES = (2048, 1024, 512, 256, 128)
#: Share of the available memory a plan may use (the allocator's slack, the process's own pages).
USABLE = 0.85
_ACTIVATIONS: dict[tuple[Any, ...], tuple[float, float]] = {}


def available_memory(device: torch.device) -> int | None:
    """Bytes this run may still allocate: MemAvailable on CPU, the free memory on CUDA (None: unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def activation_bytes(net: VGGFeatures, layers: Sequence[str], precision: torch.dtype) -> tuple[float, float]:
    """(bytes autograd keeps per input pixel for one forward through `layers`, bytes of the largest map per
    pixel), measured once per network, layers and precision by counting the tensors saved for backward in a
    64 px forward (every map a power-of-two fraction of the input, so the count per pixel is that of any size;
    128 px gave the same to 1e-5, at three times the cost in every run's start-up)."""
    key = (id(net), tuple(sorted(layers)), precision)
    if key not in _ACTIVATIONS:
        param = next(net.parameters())
        side = 64
        if precision != param.dtype:
            net._reduced(precision)  # its weight copy exists before the count, so it is not counted as saved
        x = torch.rand(1, 3, side, side, device=param.device, dtype=param.dtype, requires_grad=True)
        storages: dict[int, int] = {}
        weights = {p.untyped_storage().data_ptr() for p in net.parameters()}
        weights |= {p.untyped_storage().data_ptr() for layers_copy in net._reduced_layers.values()
                    for p in layers_copy.parameters()}

        def pack(t: Tensor) -> Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in weights:  # the weights are counted once, as the network's
                storages[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            features = net(x, layers, precision)
        outputs = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in features.values()}
        saved = sum({**storages, **outputs}.values())
        largest = max(storages.values(), default=0)
        _ACTIVATIONS[key] = (saved / side**2, largest / side**2)
    return _ACTIVATIONS[key]


@dataclass(frozen=True)
class MemoryEstimate:
    """The parts of a step's peak memory, in bytes."""

    network: int
    activations: int
    history: int
    targets: int

    @property
    def total(self) -> int:
        return self.network + self.activations + self.history + self.targets

    def describe(self) -> str:
        return (f"{self.total / _GIB:.1f} GiB (network {self.network / _GIB:.2f}, activations "
                f"{self.activations / _GIB:.2f}, L-BFGS history {self.history / _GIB:.2f}, targets "
                f"{self.targets / _GIB:.2f})")


def estimate(net: VGGFeatures, shape: tuple[int, int], layers: Sequence[str], content_layers: Sequence[str],
             precision: torch.dtype, tile: int | None, history_size: int, optimizer: str,
             winograd: bool = False) -> MemoryEstimate:
    """A step's peak memory at `shape`, untiled (`tile` None) or tiled: the network's weights (and their
    reduced-precision copy), the activations autograd keeps for one evaluation (of one tile's window when
    tiled) plus the two largest maps of the backward, the optimizer's vectors (L-BFGS: 2 * history_size of
    them, pixels * 3 * 4 bytes each, and a few more), and the content targets; untiled with ``winograd``, the
    Winograd routes' filter copies and NNPACK's workspace for the largest map too (F(4x4, 3x3)'s temporaries,
    on maps a quarter that size, fit within it)."""
    pixels = shape[0] * shape[1]
    network = sum(p.numel() * p.element_size() for p in net.parameters())
    if precision != torch.float32:
        network += network * torch.tensor([], dtype=precision).element_size() // 4
    per_pixel, largest = activation_bytes(net, layers, precision)
    if tile is None:
        seen = pixels
    else:
        margin = margin_for(layers)
        seen = min(shape[0], tile + 2 * margin) * min(shape[1], tile + 2 * margin)
    activations = int(seen * (per_pixel + 2 * largest))
    if winograd and tile is None:  # its filter copies and its workspace
        network += winograd_filter_bytes(shape, max(INDEX[canonical_layer(name)] for name in layers))
        activations += int(seen * largest / 4 * WORKSPACE_PER_VALUE)  # largest: float32 bytes per pixel
    vector = pixels * 3 * 4
    # a few more vectors (x, g, d, the trial, temporaries) and the diagonal scaling's average
    vectors = 2 * history_size + 9 if optimizer == "lbfgs" else 8
    targets = sum(int(pixels * layer_info(name).channels * 4 / layer_info(name).stride ** 2) for name in content_layers)
    return MemoryEstimate(network, activations, vectors * vector, targets)


#: The shortest L-BFGS history a plan shortens to before it refuses (a memory plan's floor; docs/benchmarks.md
#: "The L-BFGS history at large sizes" has the measurement that chose it).
MIN_HISTORY = 10


@dataclass(frozen=True)
class MemoryPlan:
    """How a stage runs within the memory: its tile side (None: untiled) and the L-BFGS pairs it keeps."""

    tile: int | None
    history: int


def plan_memory(net: VGGFeatures, shape: tuple[int, int], layers: Sequence[str], content_layers: Sequence[str],
                precision: torch.dtype, setting: str, history_size: int, optimizer: str, available: int | None,
                steps: int | None = None, winograd: bool = False) -> MemoryPlan:
    """The memory preflight of a stage: the tile side and the history, or SettingsError naming what would fit.

    ``setting`` is the `tile` setting (auto, off or a side in px). A stage of ``steps`` steps never holds more
    than ``steps`` pairs, so the history is counted up to that (the plan's history stays ``history_size`` then:
    a resumed run with more steps behaves as the uninterrupted one). Tiling (exact) comes first; when no tile
    fits with the whole history, the history is shortened to what fits, down to MIN_HISTORY pairs (the L-BFGS
    pairs, not the network, are the memory of a step beyond about 2048 px). ``winograd``: whether an untiled
    stage would take Winograd's route (tiled ones never do), whose workspace the untiled estimate counts."""
    history = history_size if steps is None else max(1, min(history_size, steps))

    def need(tile: int | None, pairs: int, at: tuple[int, int] = shape) -> MemoryEstimate:
        return estimate(net, at, layers, content_layers, precision, tile, pairs, optimizer, winograd)

    if setting == "off":
        candidates: list[int | None] = [None]
    elif setting == "auto":
        candidates = [None, *(t for t in AUTO_TILES if t < max(shape))]
    else:
        candidates = [int(setting)]
    if available is None:
        return MemoryPlan(candidates[0], history_size)
    budget = USABLE * available
    for tile in candidates:
        if need(tile, history).total <= budget:
            return MemoryPlan(tile, history_size)
    vector = shape[0] * shape[1] * 3 * 4

    def pairs_that_fit(tile: int | None) -> int:
        return int((budget - need(tile, 0).total) / (2 * vector))

    if optimizer == "lbfgs":
        # the tile that leaves room for the longest history; the largest such tile (candidates run largest first)
        best = max(candidates, key=pairs_that_fit)
        pairs = pairs_that_fit(best)  # fewer than `history`: that did not fit
        if pairs >= min(MIN_HISTORY, history):
            return MemoryPlan(best, pairs)
    smallest = candidates[-1] if setting != "auto" else min(AUTO_TILES)
    floor = min(MIN_HISTORY, history) if optimizer == "lbfgs" else history
    scale = 1.0
    while scale > 0.05:  # the largest picture of this shape whose plan fits, in steps of 5%
        scale -= 0.05
        smaller = (max(16, int(shape[0] * scale)), max(16, int(shape[1] * scale)))
        if need(smallest, floor, smaller).total <= budget:
            break
    how = {"off": "untiled", "auto": "untiled" if candidates[-1] is None else f"tiled in {candidates[-1]} px tiles"
           }.get(setting, f"tiled in {setting} px tiles")
    hint = f"{{size}} {max(smaller)} would fit" if scale > 0.05 else "no size would fit"
    if setting == "off":
        hint += "; {tile} auto tiles when the untiled run does not fit"
    least = need(candidates[-1], floor)
    raise SettingsError(f"a step at {shape[1]}x{shape[0]} px {how} needs about {least.describe()}, more than the "
                        f"{budget / _GIB:.1f} GiB of the {available / _GIB:.1f} GiB available; {hint}",
                        field="size")
