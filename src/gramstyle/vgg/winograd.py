"""VGG's 3x3 convolutions by Winograd's minimal filtering, for CPUs whose widest vectors are AVX2: two
algorithms, each where it measured faster than oneDNN's direct convolution (docs/benchmarks.md, "Winograd
convolutions").

- F(6x6, 3x3) by NNPACK (bundled with PyTorch's CPU build) for the large maps: about a fifth of the direct
  method's multiplications, but NNPACK transforms every filter on every call, which small maps do not pay back,
  and it takes the default (NCHW) layout.
- F(4x4, 3x3) here, in PyTorch's own matrix products, for the deep layers (256 and more output channels) on
  small and mid-sized maps: a quarter of the multiplications, with the filters transformed once per network and
  the maps channels-last, as oneDNN's layers take them.

The price is float32 rounding in the transforms: a relative error of a few 1e-6 per layer and about 1e-4 on the
image gradient after VGG's thirteen layers (tests/test_winograd.py), against float32's 1e-7. The backward pass
(the gradient with respect to the input; the weights are frozen) is, for NNPACK, again a 3x3 convolution with the
filters flipped and their channels swapped, and for F(4x4, 3x3) the exact adjoint of its three linear steps.
conv1_1's three input channels stay direct.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor

from ..layers import VGG19, Layer

Route = Literal["nnpack", "f4", "direct"]

#: NNPACK's F(6x6, 3x3) takes a layer whose input has at least this many channels and positions (h * w), in images
#: of at least NNPACK_MIN_PIXELS pixels. Below 4096 positions F(4x4, 3x3) was faster (its filters are transformed
#: once); in smaller images NNPACK's NCHW layout (pooling and the rest of the step in it) cost more than its
#: large maps saved: a step at 256 x 192 took 1.04 times the direct one (docs/benchmarks.md).
MIN_CHANNELS = 64
MIN_POSITIONS = 4096
NNPACK_MIN_PIXELS = 100_000
#: F(4x4, 3x3) takes a layer with at least this many output channels (its transforms are paid per map, its savings
#: per output channel: at 128 it lost to oneDNN) and positions (below, its fixed costs exceed the savings).
F4_MIN_OUT_CHANNELS = 256
F4_MIN_POSITIONS = 256
#: ``auto`` takes the Winograd route for images of at least this many pixels (docs/benchmarks.md).
MIN_PIXELS = 25_000
#: NNPACK's workspace holds each map's transforms, about 3.6 floats per input value (8x8 tiles for 6x6 outputs,
#: input and output side): what the memory plan adds for the largest map (measured at 2048 x 1536, 64 channels).
#: F(4x4, 3x3)'s temporaries, about 7 floats per input value of maps a quarter of that size, fit within it.
WORKSPACE_PER_VALUE = 3.6 * 4

# Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016), F(4x4, 3x3) with the points
# 0, 1, -1, 2, -2 and infinity: Y = A^T [(G g G^T) * (B^T d B)] A for a 6 x 6 input tile d and a 3 x 3 filter g.
_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
      (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


@functools.cache
def available() -> bool:
    """Whether PyTorch was built with NNPACK and it initialises on this CPU (the first call initialises it)."""
    try:
        return bool(torch.backends.nnpack.is_available())  # type: ignore[no-untyped-call]
    except (AttributeError, RuntimeError):
        return False


def route(in_channels: int, out_channels: int, height: int, width: int, pixels: int) -> Route:
    """How a layer with this input (channels, height, width) and output channels, in an image of ``pixels``
    pixels, is computed on the Winograd route: by NNPACK, by F(4x4, 3x3), or directly (oneDNN)."""
    positions = height * width
    if (pixels >= NNPACK_MIN_PIXELS and in_channels >= MIN_CHANNELS and positions >= MIN_POSITIONS
            and available()):
        return "nnpack"
    if out_channels >= F4_MIN_OUT_CHANNELS and positions >= F4_MIN_POSITIONS:
        return "f4"
    return "direct"


def _convolutions(deepest: int) -> Iterator[tuple[int, int, Layer]]:
    """(index in VGG-19, input channels, the layer) of each convolution through the layer ``deepest``."""
    channels = 3
    for index, layer in enumerate(VGG19[: deepest + 1]):
        if layer.kind == "conv":
            yield index, channels, layer
            channels = layer.channels


def routes(shape: tuple[int, int], deepest: int) -> dict[int, Route]:
    """Each convolution's route (`route`), by its index in VGG-19, for an image of ``shape`` through the layer of
    index ``deepest``."""
    pixels = shape[0] * shape[1]
    return {index: route(c_in, layer.channels, shape[0] // layer.stride, shape[1] // layer.stride, pixels)
            for index, c_in, layer in _convolutions(deepest)}


def filter_bytes(shape: tuple[int, int], deepest: int) -> int:
    """Bytes of the filter copies the Winograd route keeps for an image of ``shape`` through the layer of index
    ``deepest``: two per NNPACK layer (as NNPACK takes them, and transposed), and each F(4x4, 3x3) layer's
    transformed filters (36 values for 9)."""
    chosen = routes(shape, deepest)
    copies = {"nnpack": 2, "f4": 4, "direct": 0}
    return sum(copies[chosen[index]] * layer.channels * c_in * 9 * 4 for index, c_in, layer in _convolutions(deepest))


class _Conv3x3(torch.autograd.Function):
    """y = conv(x, w) + b (3x3, stride 1, padding 1) by NNPACK; the input gradient by NNPACK too."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, weight: Tensor, bias: Tensor,
                weight_t: Tensor) -> Tensor:
        ctx.save_for_backward(weight_t)
        return torch._nnpack_spatial_convolution(x.contiguous(), weight, bias, [1, 1])

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,  # type: ignore[override]
                 grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        (weight_t,) = ctx.saved_tensors  # type: ignore[attr-defined]
        if not ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            return None, None, None, None
        return torch._nnpack_spatial_convolution(grad.contiguous(), weight_t, None, [1, 1]), None, None, None


def transposed(weight: Tensor) -> Tensor:
    """The filters of the input gradient: flipped in space, input and output channels swapped."""
    return weight.flip(2, 3).transpose(0, 1).contiguous()


def conv3x3(x: Tensor, weight: Tensor, bias: Tensor, weight_t: Tensor) -> Tensor:
    """A frozen 3x3 convolution (padding 1) of a float32 CPU map (NCHW) by Winograd.

    ``weight`` is contiguous (NCHW) and ``weight_t`` is `transposed(weight)`, both made once per network.
    """
    y: Tensor = _Conv3x3.apply(x, weight, bias, weight_t)  # type: ignore[no-untyped-call]
    return y


@functools.cache
def _transforms() -> tuple[Tensor, Tensor]:
    """F(4x4, 3x3)'s input and output transforms of a whole tile, as matrices: B^T d B for a flattened 6 x 6 tile
    d is kron(B^T, B^T) d (36 x 36), A^T m A is kron(A^T, A^T) m (16 x 36)."""
    bt, at = torch.tensor(_BT, dtype=torch.float64), torch.tensor(_AT, dtype=torch.float64)
    return torch.kron(bt, bt).float(), torch.kron(at, at).float()


def f4_filters(weight: Tensor) -> Tensor:
    """G g G^T for every filter: (36, in_channels, out_channels), float32. One matrix product of kron(G, G)
    (36 x 9, made in float64) with the filters laid out (9, in x out): in float32 its error is float32's rounding
    (tests/test_winograd.py), and it costs a fifth of an einsum in float64 at every network's first step
    (docs/benchmarks.md, start-up)."""
    g = torch.tensor(_G, dtype=torch.float64)
    out_channels, in_channels = weight.shape[:2]
    taps = weight.detach().float().cpu().permute(2, 3, 1, 0).reshape(9, in_channels * out_channels)
    return torch.mm(torch.kron(g, g).float(), taps).view(36, in_channels, out_channels)


class _F4x4(torch.autograd.Function):
    """y = conv(x, w) + b (3x3, stride 1, padding 1) by F(4x4, 3x3): the input cut into 6 x 6 tiles that overlap
    by 2 (stride 4), each tile transformed (B^T d B), multiplied with the transformed filters as 36 matrix
    products over the channels, and transformed back (A^T m A) into its 4 x 4 outputs. Channels-last throughout:
    a tile's channels are the inner dimension of every product. The output is channels-last."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, filters: Tensor, bias: Tensor) -> Tensor:
        kb, ka = _transforms()
        _, channels, height, width = x.shape
        out_channels = filters.shape[2]
        th, tw = -(-height // 4), -(-width // 4)  # tiles down and across
        padded = x.new_zeros(4 * th + 2, 4 * tw + 2, channels)
        padded[1 : height + 1, 1 : width + 1].copy_(x[0].permute(1, 2, 0))
        sh, sw, sc = padded.stride()
        tiles = padded.as_strided((6, 6, th, tw, channels), (sh, sw, 4 * sh, 4 * sw, sc))
        v = torch.mm(kb, tiles.reshape(36, -1)).view(36, th * tw, channels)
        m = torch.bmm(v, filters)
        y = torch.mm(ka, m.view(36, -1)).view(4, 4, th, tw, out_channels)
        full = y.permute(2, 0, 3, 1, 4).reshape(4 * th, 4 * tw, out_channels)
        out = torch.empty((1, out_channels, height, width), dtype=x.dtype, memory_format=torch.channels_last)
        torch.add(full[:height, :width], bias, out=out[0].permute(1, 2, 0))
        ctx.save_for_backward(filters)
        ctx.dims = (channels, height, width, th, tw)  # type: ignore[attr-defined]
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,  # type: ignore[override]
                 grad: Tensor) -> tuple[Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            return None, None, None
        (filters,) = ctx.saved_tensors  # type: ignore[attr-defined]
        channels, height, width, th, tw = ctx.dims  # type: ignore[attr-defined]
        kb, ka = _transforms()
        out_channels = filters.shape[2]
        # The adjoint of each forward step, in reverse: A^T m A, the products, B^T d B, the overlapping tiles.
        upstream = grad[0].permute(1, 2, 0)
        if (4 * th, 4 * tw) != (height, width):
            upstream = torch.nn.functional.pad(upstream, (0, 0, 0, 4 * tw - width, 0, 4 * th - height))
        g = upstream.reshape(th, 4, tw, 4, out_channels).permute(1, 3, 0, 2, 4).reshape(16, -1)
        dm = torch.mm(ka.t(), g).view(36, th * tw, out_channels)
        dv = torch.bmm(dm, filters.transpose(1, 2))
        dd = torch.mm(kb.t(), dv.view(36, -1)).view(6, 6, th, tw, channels)
        # Tile (i, j) covers rows 4i .. 4i+5 of the padded input: its rows 4, 5 are rows 0, 1 of tile i+1.
        z = grad.new_zeros(th + 1, 4, tw + 1, 4, channels)
        z[:th, :, :tw, :] += dd[:4, :4].permute(2, 0, 3, 1, 4)
        z[1:, :2, :tw, :] += dd[4:, :4].permute(2, 0, 3, 1, 4)
        z[:th, :, 1:, :2] += dd[:4, 4:].permute(2, 0, 3, 1, 4)
        z[1:, :2, 1:, :2] += dd[4:, 4:].permute(2, 0, 3, 1, 4)
        dx = z.view(4 * th + 4, 4 * tw + 4, channels)[1 : height + 1, 1 : width + 1].contiguous()
        return dx.permute(2, 0, 1).unsqueeze(0), None, None


def conv3x3_f4(x: Tensor, filters: Tensor, bias: Tensor) -> Tensor:
    """A frozen 3x3 convolution (padding 1) of a float32 CPU map, in any layout, by F(4x4, 3x3); ``filters`` is
    `f4_filters(weight)`, made once per network. The output is channels-last."""
    y: Tensor = _F4x4.apply(x, filters, bias)  # type: ignore[no-untyped-call]
    return y
