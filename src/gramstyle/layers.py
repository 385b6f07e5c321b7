"""VGG-19's convolutional part as data: the 16 conv and 5 pooling layers the paper uses, named as it names them.

Simonyan & Zisserman's VGG-19 (ICLR 2015) has 16 conv and 5 pooling layers before its fully connected layers,
which the paper drops. ``conv{b}_{c}`` is the *rectified* response of the c-th convolution in block b (the
authors' code reads the ReLU output; ``relu{b}_{c}`` is accepted as the same layer), ``pool{b}`` the pooled map
at the end of block b. This module knows nothing of weights or tensors; `gramstyle.vgg` builds the network.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SettingsError, literal


@dataclass(frozen=True)
class Layer:
    name: str  # as the paper writes it: conv1_1 ... conv5_4, pool1 ... pool5
    kind: str  # "conv" (3x3, stride 1, pad 1, followed by ReLU) or "pool" (2x2, stride 2)
    channels: int  # output channels N_l
    stride: int  # total downsampling relative to the input
    receptive_field: int  # side of the input window that one position of this layer sees, in pixels


def _vgg19_layers() -> tuple[Layer, ...]:
    # (convolutions per block, channels): VGG-19 is configuration "E" of Simonyan & Zisserman, Table 1.
    blocks = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))
    layers: list[Layer] = []
    stride, field = 1, 1
    for b, (n_conv, channels) in enumerate(blocks, start=1):
        for c in range(1, n_conv + 1):
            field += 2 * stride  # a 3x3 convolution widens the window by one position on each side
            layers.append(Layer(f"conv{b}_{c}", "conv", channels, stride, field))
        field += stride  # a 2x2 pooling of stride 2 widens it by one position
        stride *= 2
        layers.append(Layer(f"pool{b}", "pool", channels, stride, field))
    return tuple(layers)


#: The 16 conv and 5 pooling layers of VGG-19, in order.
VGG19: tuple[Layer, ...] = _vgg19_layers()
LAYER_NAMES: tuple[str, ...] = tuple(layer.name for layer in VGG19)
INDEX: dict[str, int] = {name: i for i, name in enumerate(LAYER_NAMES)}

#: Smallest side of an image the network takes: conv5_1 sits behind four 2x poolings, so 32 px leave it 2x2.
MIN_SIDE = 32


def canonical_layer(name: str) -> str:
    """Map a user's layer name to the paper's (relu4_2 -> conv4_2); raise SettingsError for unknown names."""
    key = name.strip().lower() if isinstance(name, str) else ""
    if key.startswith("relu"):
        key = "conv" + key[len("relu"):]
    if key not in INDEX:
        raise SettingsError(f"unknown VGG-19 layer {literal(repr(name))}; known layers: conv1_1 ... conv5_4, "
                            "pool1 ... pool5")
    return key


def layer_info(name: str) -> Layer:
    return VGG19[INDEX[canonical_layer(name)]]
