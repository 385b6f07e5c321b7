"""VGG-19's 16 conv and 5 pooling layers as a frozen module that returns the rectified responses asked for."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..config import Settings
from ..errors import SettingsError, literal
from ..layers import INDEX, LAYER_NAMES, VGG19, canonical_layer
from . import winograd as _winograd
from .weights import LoadedWeights

# The network keeps its maps channels-last (h, w, C in memory), in every precision: oneDNN's kernels work in that
# layout, and average pooling there is 3-10x faster than in PyTorch's default layout (the 512 px pooling shapes,
# bf16: 2 ms forward and 11 ms backward against 21 and 32 ms). A step at 512 px: fp32 0.79 s instead of 0.90,
# bf16 0.40 instead of 0.53 (docs/benchmarks.md). The Gram matrices read these maps as transposed views.
_MEMORY_FORMAT = torch.channels_last
_DEFAULT_POOLING = Settings().pooling


class _LoadedConv2d(nn.Conv2d):
    """A convolution whose weights are loaded right after it is made: no random initialisation (for VGG-19's
    20 million weights it took a tenth of a second of every network's build)."""

    def reset_parameters(self) -> None:
        pass


class VGGFeatures(nn.Module):
    """VGG-19's convolutional part; returns the requested responses for an RGB [0, 1] input.

    Frozen and in eval mode. Every call runs the network only to the deepest layer it asks for, so one network
    serves every run of a session, whatever its layers.
    """

    def __init__(self, weights: LoadedWeights, pooling: str = _DEFAULT_POOLING) -> None:
        super().__init__()
        if pooling not in ("avg", "max"):
            raise SettingsError(f"{{pooling}} must be avg or max, got {literal(repr(pooling))}", field="pooling")
        self.preprocessing = weights.preprocessing
        self.pooling = pooling
        self.source, self.sha256 = weights.source, weights.sha256
        modules: list[nn.Module] = []
        in_channels = 3
        for layer in VGG19:
            if layer.kind == "conv":
                conv = _LoadedConv2d(in_channels, layer.channels, 3, padding=1)
                weight, bias = weights.params[layer.name]
                conv.weight.data.copy_(weight)
                conv.bias.data.copy_(bias)  # type: ignore[union-attr]
                # In place: the rectified map is what we read, and nothing needs the pre-activation.
                modules.append(nn.Sequential(conv, nn.ReLU(inplace=True)))
                in_channels = layer.channels
            else:
                pool = nn.AvgPool2d(2, 2) if pooling == "avg" else nn.MaxPool2d(2, 2)
                modules.append(pool)
        self.layers = nn.ModuleList(modules).to(memory_format=_MEMORY_FORMAT)  # type: ignore[call-overload]
        self._reduced_layers: dict[tuple[torch.dtype, torch.device], nn.ModuleList] = {}
        self._winograd_filters: dict[tuple[int, str], tuple[Tensor, ...]] = {}  # (layer, route): made when used
        self.requires_grad_(False)
        self.eval()

    def forward(  # type: ignore[override]
        self, rgb: Tensor, layers: Iterable[str], precision: torch.dtype = torch.float32, winograd: bool = False
    ) -> dict[str, Tensor]:
        """The responses of `layers` (paper names or relu aliases), keyed by their paper names.

        With ``winograd`` (float32 on the CPU only) the layers that gain by it (`winograd.route`) run by one of
        Winograd's algorithms (`gramstyle.vgg.winograd`), the others directly.

        With a reduced ``precision`` (bfloat16) the whole network runs in it, on a copy of the weights made
        once, and returns its responses in it. The image itself would lose precision in bfloat16: its 8 bits
        of mantissa round the preprocessed pixels to steps of 0.5-1 caffe units, up to one 8-bit level. So it
        enters as two bfloat16 images, x = hi + lo (hi = x rounded, lo = the remainder rounded), into a conv1_1
        that has 6 input channels with the weights W for both halves: W*hi + W*lo = W*x to about 16 bits, with
        float32 accumulation inside the convolution. That costs conv1_1's FLOPs again (0.5% of the network's)
        and spares a float32 conv1_1 and the conversion of its 64-channel response (measured at 1024 px:
        60 ms of a 1.7 s step).
        """
        wanted = {canonical_layer(name) for name in layers}
        if not wanted:
            raise ValueError("no VGG-19 layers requested")
        deepest = max(INDEX[name] for name in wanted)
        x = self.preprocessing(rgb)
        if precision == torch.float32:
            modules = self.layers
        else:
            modules = self._reduced(precision)
            hi = x.to(precision)
            x = torch.cat([hi, (x - hi.float()).to(precision)], dim=1)
        if winograd and precision == torch.float32:
            return self._forward_winograd(x, wanted, deepest)
        x = x.contiguous(memory_format=_MEMORY_FORMAT)
        out: dict[str, Tensor] = {}
        for name, module in zip(LAYER_NAMES[: deepest + 1], modules, strict=False):
            x = module(x)
            if name in wanted:
                out[name] = x
        return out

    def _forward_winograd(self, x: Tensor, wanted: set[str], deepest: int) -> dict[str, Tensor]:
        """`forward` with each layer on its Winograd route (`winograd.route`): NNPACK for the large maps, which
        come first (the maps shrink with depth), F(4x4, 3x3) for the deep layers, directly otherwise. Up to the
        last NNPACK layer the maps are in NNPACK's layout (NCHW), conv1_1 included; from there on in oneDNN's
        and F(4x4, 3x3)'s channels-last, so that a map changes layout once (each change is a copy of the map,
        forward and backward, and a change at every layer cost more than Winograd saved)."""
        routes = _winograd.routes((x.shape[2], x.shape[3]), deepest)
        last_nchw = max((i for i, r in routes.items() if r == "nnpack"), default=-1)
        x = x.contiguous() if last_nchw >= 0 else x.contiguous(memory_format=_MEMORY_FORMAT)
        out: dict[str, Tensor] = {}
        for index, (name, module) in enumerate(zip(LAYER_NAMES[: deepest + 1], self.layers, strict=False)):
            algorithm = routes.get(index)
            if algorithm == "nnpack":
                x = torch.relu_(_winograd.conv3x3(x, *self._winograd(index, algorithm)))
            elif algorithm == "f4":
                x = torch.relu_(_winograd.conv3x3_f4(x, *self._winograd(index, algorithm)))
            elif index < last_nchw:  # conv1_1 and pooling before the last NNPACK layer: in its layout
                if isinstance(module, nn.Sequential):
                    conv = module[0]
                    assert isinstance(conv, nn.Conv2d)
                    x = torch.relu_(torch.nn.functional.conv2d(x, conv.weight.contiguous(), conv.bias, padding=1))
                else:
                    x = module(x)
            else:
                x = module(x.contiguous(memory_format=_MEMORY_FORMAT))
            if name in wanted:
                out[name] = x
        return out

    def _winograd(self, index: int, algorithm: str) -> tuple[Tensor, ...]:
        """Layer ``index``'s filters as its Winograd route takes them, made the first time it takes it
        (`winograd.filter_bytes` counts them): for NNPACK contiguous, the bias, and transposed for the backward;
        for F(4x4, 3x3) transformed (`winograd.f4_filters`), and the bias."""
        key = (index, algorithm)
        if key not in self._winograd_filters:
            if next(self.parameters()).device.type != "cpu" or (algorithm == "nnpack" and not _winograd.available()):
                raise RuntimeError("Winograd convolutions need the CPU (and for large maps PyTorch's NNPACK)")
            conv = self.layers[index][0]
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None
            weight = conv.weight.detach().contiguous()
            if algorithm == "nnpack":
                self._winograd_filters[key] = (weight, conv.bias.detach(), _winograd.transposed(weight))
            else:
                self._winograd_filters[key] = (_winograd.f4_filters(weight), conv.bias.detach())
        return self._winograd_filters[key]

    def _reduced(self, precision: torch.dtype) -> nn.ModuleList:
        """The layers with their weights in `precision` (copied once per precision and device), conv1_1 taking
        the image as hi and lo halves (see `forward`)."""
        key = (precision, next(self.parameters()).device)
        cached = self._reduced_layers.get(key)
        if cached is None:
            cached = copy.deepcopy(self.layers).to(precision)
            first: nn.Conv2d = cached[0][0]
            split = nn.Conv2d(2 * first.in_channels, first.out_channels, 3, padding=1).to(precision)
            split.weight.data.copy_(torch.cat([first.weight.data, first.weight.data], dim=1))
            split.bias.data.copy_(first.bias.data)  # type: ignore[union-attr]
            cached[0][0] = split.to(memory_format=_MEMORY_FORMAT).requires_grad_(False)  # type: ignore[call-overload]
            self._reduced_layers = {key: cached}  # one copy at a time
        return cached
