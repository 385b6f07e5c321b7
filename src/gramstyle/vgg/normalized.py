"""The paper's normalised VGG-19 (CVPR 2016 version of the paper, sec. 2): each filter rescaled so that its mean
rectified response over a reference set of images is 1, which leaves the network's function unchanged up to a
per-channel scale of every layer's features."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from .. import files
from .. import images as imageio
from ..assets import REFERENCE_IMAGES
from ..errors import GramstyleError
from ..layers import VGG19, layer_info
from .network import VGGFeatures
from .weights import ConvParams, LoadedWeights, load_caffe_weights

#: Bump when the normalisation procedure changes, so that stale caches are not used.
_NORMALIZATION_VERSION = 1
#: Side of the reference images when measuring mean activations.
NORMALIZATION_SIZE = 256


@torch.no_grad()
def mean_activations(weights: LoadedWeights, images: Sequence[Tensor]) -> dict[str, Tensor]:
    """Mean rectified response of every conv filter over all positions of all `images` (average pooling)."""
    names = [layer.name for layer in VGG19 if layer.kind == "conv"]
    net = VGGFeatures(weights, "avg")
    sums = {name: torch.zeros(layer_info(name).channels, dtype=torch.float64) for name in names}
    counts = dict.fromkeys(names, 0)
    for image in images:
        for name, features in net(image, names).items():
            sums[name] += features.double().sum(dim=(0, 2, 3))
            counts[name] += features.shape[2] * features.shape[3]
    return {name: (sums[name] / counts[name]).float() for name in names}


def normalize(weights: LoadedWeights, means: Mapping[str, Tensor]) -> LoadedWeights:
    """Rescale each filter so its mean activation is 1, compensating in the next layer (CVPR 2016, sec. 2).

    ReLU and both poolings commute with a positive per-channel scale, so dividing filter k of layer l (weights
    and bias) by its mean m_k and multiplying the next layer's weights from channel k by m_k leaves every later
    pre-activation unchanged: each layer's features become the original ones divided per channel by m.
    A filter that never fires on the reference set (m_k = 0) keeps its scale.
    """
    params: ConvParams = {}
    previous: Tensor | None = None
    for layer in VGG19:
        if layer.kind != "conv":
            continue
        w, b = weights.params[layer.name]
        m = means[layer.name].clamp_min(0)
        m = torch.where(m > 1e-12, m, torch.ones_like(m))
        w = w / m.view(-1, 1, 1, 1)
        if previous is not None:
            w = w * previous.view(1, -1, 1, 1)
        params[layer.name] = (w.contiguous(), (b / m).contiguous())
        previous = m
    return LoadedWeights(params, weights.preprocessing, f"{weights.source}-normalized", weights.sha256)


def cache_dir() -> Path:
    root = os.environ.get("GRAMSTYLE_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(root) / "gramstyle" if root else Path.home() / ".cache" / "gramstyle"


def load_normalized_caffe_weights() -> LoadedWeights:
    """The paper's normalised VGG-19: caffe weights, unit mean activation on the bundled reference images.

    Only the 5,504 per-filter means are cached (atomically, in the user's cache folder), keyed by the weights'
    checksum, the reference images and the procedure's version; the weights are rebuilt from them in
    milliseconds. Without a readable or writable cache the means are recomputed (about a second on a CPU).
    """
    base = load_caffe_weights()
    key = hashlib.sha256(f"{base.sha256}:{_NORMALIZATION_VERSION}:{NORMALIZATION_SIZE}".encode())
    for path in REFERENCE_IMAGES:
        key.update(path.read_bytes())
    cache = cache_dir() / f"caffe-normalized-{key.hexdigest()[:16]}.pt"
    means: dict[str, Tensor] | None = None
    with contextlib.suppress(Exception):  # unreadable, damaged or forbidden: recomputed (and replaced if we can)
        if cache.is_file():
            means = torch.load(cache, map_location="cpu", weights_only=True)
    if means is None:
        references = [imageio.load_image(path, NORMALIZATION_SIZE) for path in REFERENCE_IMAGES]
        means = mean_activations(base, references)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with files.atomic_path(cache) as tmp:
                torch.save(means, tmp)
        except (OSError, GramstyleError):  # no writable cache: fine, just slower next time
            pass
    return normalize(base, means)
