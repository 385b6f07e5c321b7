"""VGG's 3x3 convolutions by Winograd's minimal filtering (NNPACK, bundled with PyTorch's CPU build), for CPUs
whose widest vectors are AVX2.

Winograd's F(6x6, 3x3) computes a 3x3 convolution with about a fifth of the multiplications of the direct
method; the price is float32 rounding in the transforms, a relative error of about 1e-6 per layer and 1e-4 on
the image gradient after VGG's thirteen layers (tests/test_winograd.py), against float32's 1e-7. The backward
pass (the gradient with respect to the input; the weights are frozen) is again a 3x3 convolution, with the
filters flipped and their channels swapped, so it takes the same route. oneDNN's direct convolution stays
faster where a map has few positions (NNPACK transforms every filter on every call, which the positions do not
pay back) and for conv1_1's three input channels, so only the layers past those bounds use it
(docs/benchmarks.md, "Winograd convolutions").
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

#: A layer is computed by Winograd when its input has at least this many channels and positions (h * w); below
#: either, oneDNN's direct convolution measured as fast or faster on the AVX2 machine (docs/benchmarks.md).
MIN_CHANNELS = 64
MIN_POSITIONS = 2048
#: ... and `auto` uses it only for images of at least this many pixels: a step at 256 x 192 cost the same either
#: way, at 128 x 96 25% more by Winograd, at 384 x 288 11% less and at 512 x 384 22% less (docs/benchmarks.md).
MIN_PIXELS = 100_000
#: NNPACK's workspace holds each map's transform, about 3.6 floats per input value (8x8 tiles for 6x6 outputs,
#: input and output side): what the memory plan adds for the largest map (measured at 2048 x 1536, 64 channels).
WORKSPACE_PER_VALUE = 3.6 * 4


@functools.cache
def available() -> bool:
    """Whether PyTorch was built with NNPACK and it initialises on this CPU (the first call initialises it)."""
    try:
        return bool(torch.backends.nnpack.is_available())  # type: ignore[no-untyped-call]
    except (AttributeError, RuntimeError):
        return False


def uses_winograd(channels: int, height: int, width: int) -> bool:
    """Whether a layer whose input has these dimensions takes the Winograd route."""
    return channels >= MIN_CHANNELS and height * width >= MIN_POSITIONS


def filter_bytes(shape: tuple[int, int], deepest: int) -> int:
    """Bytes of the filter copies Winograd's layers keep (two per layer: as NNPACK takes them, and transposed)
    for an image of ``shape`` through the layer of index ``deepest``."""
    from ..layers import VGG19

    total, channels = 0, 3
    for layer in VGG19[: deepest + 1]:
        if layer.kind == "conv":
            if uses_winograd(channels, shape[0] // layer.stride, shape[1] // layer.stride):
                total += 2 * layer.channels * channels * 9 * 4
            channels = layer.channels
    return total


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
