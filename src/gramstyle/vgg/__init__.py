"""VGG-19 as the paper uses it: weights that carry their preprocessing, the normalised network, the network."""

from __future__ import annotations

from .network import VGGFeatures
from .normalized import load_normalized_caffe_weights, mean_activations, normalize
from .weights import (
    CAFFE,
    CAFFE_WEIGHTS_SHA256,
    PREPROCESSING,
    TORCHVISION,
    LoadedWeights,
    Preprocessing,
    caffe_weights_path,
    load_caffe_weights,
    load_torchvision_weights,
    load_weights_file,
)


def load_weights(weights: str, preprocessing: str | None = None) -> LoadedWeights:
    """Resolve the ``weights`` setting: "caffe", "caffe-normalized", "torchvision", or a path to a state dict."""
    if weights == "caffe":
        return load_caffe_weights()
    if weights == "caffe-normalized":
        return load_normalized_caffe_weights()
    if weights == "torchvision":
        return load_torchvision_weights()
    return load_weights_file(weights, preprocessing)


__all__ = [
    "CAFFE",
    "CAFFE_WEIGHTS_SHA256",
    "PREPROCESSING",
    "TORCHVISION",
    "LoadedWeights",
    "Preprocessing",
    "VGGFeatures",
    "caffe_weights_path",
    "load_caffe_weights",
    "load_normalized_caffe_weights",
    "load_torchvision_weights",
    "load_weights",
    "load_weights_file",
    "mean_activations",
    "normalize",
]
