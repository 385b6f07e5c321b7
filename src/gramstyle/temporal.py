"""Video's temporal loss (Ruder, Dosovitskiy & Brox, "Artistic style transfer for videos", GCPR 2016) and the
optical-flow arithmetic it needs: warping by a backward flow, the reliability of a flow from the forward-backward
check and motion boundaries, the long-term "closest first" weights, and Middlebury ``.flo`` files.

Conventions: a flow is a float32 tensor (H, W, 2) of pixel displacements (dx, dy). The flow *from frame a to
frame b* is defined on frame a's pixels: pixel p of a is at p + flow(p) in b. To bring frame b's picture onto
frame a's pixels, warp it by that flow (`warp(picture_b, flow_a_to_b)`): each pixel of a samples b at p + flow(p).
Ruder et al. call the flow from frame i to an earlier frame its backward flow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import files
from .errors import GramstyleError, literal

#: Ruder et al.'s thresholds (sec. 3.1 of the paper): a pixel is disoccluded where the forward flow, followed
#: back, does not return, |w~ + w^|^2 > OCCLUSION_RELATIVE (|w~|^2 + |w^|^2) + OCCLUSION_ABSOLUTE (pixels^2), and
#: on a motion boundary where |grad u^|^2 + |grad v^|^2 > BOUNDARY_RELATIVE |w^|^2 + BOUNDARY_ABSOLUTE. The same
#: four constants are in Ruder's released checker (manuel-ruder/artistic-videos,
#: consistencyChecker/consistencyChecker.cpp, `checkConsistency`: "0.01*(u2*u2 + v2*v2 + u*u + v*v) + 0.5f" and
#: "0.01 * (u2*u2+v2*v2) + 0.002f"), whose flow gradient is the central difference CDerivative(3), [-0.5, 0, 0.5].
#: Not taken from it: its Gaussian smoothing of the map (SMOOTH_STRENGH 0.8), which makes c soft; here c is 0 or 1.
OCCLUSION_RELATIVE = 0.01
OCCLUSION_ABSOLUTE = 0.5
BOUNDARY_RELATIVE = 0.01
BOUNDARY_ABSOLUTE = 0.002

_FLO_TAG = 202021.25  # "PIEH" read as a little-endian float: the Middlebury format's magic number


class FlowError(GramstyleError):
    """A flow file that cannot be read or a flow whose shape does not fit its frames."""


# --- warping -----------------------------------------------------------------------------------------------------

def _grid(flow: Tensor) -> Tensor:
    """Sampling positions p + flow(p) in grid_sample's [-1, 1] coordinates (align_corners=True: -1 and 1 are the
    centres of the first and last pixels), shape (1, H, W, 2)."""
    height, width = flow.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=flow.dtype, device=flow.device),
                            torch.arange(width, dtype=flow.dtype, device=flow.device), indexing="ij")
    x = (xs + flow[..., 0]) * (2.0 / max(width - 1, 1)) - 1.0
    y = (ys + flow[..., 1]) * (2.0 / max(height - 1, 1)) - 1.0
    return torch.stack([x, y], dim=-1).unsqueeze(0)


def inside(flow: Tensor) -> Tensor:
    """(H, W) float mask: 1 where p + flow(p) falls inside the frame (a pixel whose source lies outside was not
    visible in the other frame)."""
    height, width = flow.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=flow.dtype, device=flow.device),
                            torch.arange(width, dtype=flow.dtype, device=flow.device), indexing="ij")
    x, y = xs + flow[..., 0], ys + flow[..., 1]
    return ((x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)).to(flow.dtype)


def warp(picture: Tensor, flow: Tensor, mode: str = "bilinear") -> Tensor:
    """``picture`` ((1, C, H, W) or (C, H, W), or a flow (H, W, 2)) sampled at p + flow(p), bilinearly or with
    ``mode="bicubic"`` (sharper, may overshoot: clamp a picture after); outside the frame the nearest border pixel
    (such pixels get reliability 0 in `reliability`)."""
    if picture.dim() == 3 and picture.shape[-1] == 2 and picture.shape[:2] == flow.shape[:2]:
        return warp(picture.permute(2, 0, 1).unsqueeze(0), flow, mode)[0].permute(1, 2, 0)
    batch = picture.unsqueeze(0) if picture.dim() == 3 else picture
    if tuple(batch.shape[2:]) != tuple(flow.shape[:2]):
        raise FlowError(f"a flow of {flow.shape[1]}x{flow.shape[0]} cannot warp a picture of "
                        f"{batch.shape[3]}x{batch.shape[2]}")
    grid = _grid(flow.to(batch.dtype))
    out = torch.nn.functional.grid_sample(batch, grid, mode=mode, padding_mode="border", align_corners=True)
    return out if picture.dim() == 4 else out[0]


# --- reliability -------------------------------------------------------------------------------------------------

def disocclusions(backward: Tensor, forward: Tensor) -> Tensor:
    """(H, W) mask on frame i's pixels, 1 where the forward-backward check passes: ``backward`` is the flow from
    frame i to the earlier frame (w^), ``forward`` the flow from that frame to frame i (w), and w~(p) = w(p + w^(p))
    must nearly cancel w^(p). Pixels whose source lies outside the frame fail."""
    forward_back = warp(forward, backward)  # w~: the forward flow seen from frame i's pixels
    mismatch = (forward_back + backward).square().sum(-1)
    bound = OCCLUSION_RELATIVE * (forward_back.square().sum(-1) + backward.square().sum(-1)) + OCCLUSION_ABSOLUTE
    return (mismatch <= bound).to(backward.dtype) * inside(backward)


def motion_boundaries(backward: Tensor) -> Tensor:
    """(H, W) mask, 1 away from motion boundaries of the backward flow: |grad u|^2 + |grad v|^2 at most
    BOUNDARY_RELATIVE |w^|^2 + BOUNDARY_ABSOLUTE, the gradient by central differences as in Ruder's checker (0 in
    the first and last row and column). On an estimated flow the central difference also passes less of the flow's
    pixel-to-pixel noise than a forward difference, so fewer false boundaries (docs/video.md)."""
    dx = torch.zeros_like(backward)
    dy = torch.zeros_like(backward)
    dx[:, 1:-1] = 0.5 * (backward[:, 2:] - backward[:, :-2])
    dy[1:-1] = 0.5 * (backward[2:] - backward[:-2])
    gradient = dx.square().sum(-1) + dy.square().sum(-1)
    bound = BOUNDARY_RELATIVE * backward.square().sum(-1) + BOUNDARY_ABSOLUTE
    return (gradient <= bound).to(backward.dtype)


def reliability(backward: Tensor, forward: Tensor) -> Tensor:
    """Ruder's per-pixel weight c in {0, 1} of frame i: 0 at disocclusions (forward-backward check, or a source
    outside the frame) and on motion boundaries, else 1."""
    return disocclusions(backward, forward) * motion_boundaries(backward)


def closest_first(weights: Sequence[Tensor]) -> list[Tensor]:
    """Long-term weights, nearest previous frame first (Ruder et al., eq. 8): each pixel is tied to the closest
    previous frame in which it is reliable, c_long_j = max(c_j - sum_{k < j} c_k, 0)."""
    out: list[Tensor] = []
    seen: Tensor | None = None
    for c in weights:
        out.append(c if seen is None else (c - seen).clamp(min=0))
        seen = c.clone() if seen is None else seen + c
    return out


def warping_error(frame: Tensor, previous_warped: Tensor, mask: Tensor) -> float:
    """Lai et al. (2018)'s warping error: the mean over reliable pixels (``mask`` > 0) of the squared RGB
    difference (channels averaged, values in [0, 1]) between a frame and the previous one warped onto it."""
    weight = mask.reshape(1, 1, *mask.shape[-2:]).to(frame.dtype)
    total = float(weight.sum())
    if total == 0:
        return 0.0
    diff = (frame - previous_warped).square().mean(1, keepdim=True)
    return float((diff * weight).sum()) / total


# --- the term ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TemporalTerm:
    """Ruder et al.'s temporal loss (eq. 7 short-term, eq. 9 long-term): sum_j (1/D) sum_k c_j[k] (x[k] -
    w_j[k])^2 over the D = 3 H W values of the image x in [0, 1], against each previous output w_j warped onto
    this frame with its weights c_j (H, W). Size-free like eq. 5 of the style loss, so its weight transfers across
    sizes (docs/video.md gives the measured one)."""

    targets: tuple[Tensor, ...]  # (1, 3, H, W) each: the warped previous outputs
    weights: tuple[Tensor, ...]  # (H, W) each
    labels: tuple[str, ...] = ()  # one per target, e.g. "1" for the previous frame; "temporal:1" in the parts
    name: str = "temporal"
    layers: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.targets) != len(self.weights) or not self.targets:
            raise FlowError("the temporal term needs one weight map per warped frame, and at least one")

    def resized(self, shape: tuple[int, int]) -> TemporalTerm:
        """The term at another size (a coarse-to-fine stage): targets resized bilinearly, weights by area."""
        if tuple(self.targets[0].shape[2:]) == tuple(shape):
            return self
        targets = tuple(torch.nn.functional.interpolate(t, size=shape, mode="bilinear", align_corners=False)
                        for t in self.targets)
        weights = tuple(torch.nn.functional.interpolate(c[None, None], size=shape, mode="area"
                                                        if c.shape[0] >= shape[0] else "nearest")[0, 0]
                        for c in self.weights)
        return TemporalTerm(targets, weights, self.labels)

    def to(self, device: torch.device) -> TemporalTerm:
        return TemporalTerm(tuple(t.to(device) for t in self.targets), tuple(c.to(device) for c in self.weights),
                            self.labels)

    def __call__(self, features: Mapping[str, Tensor], image: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        d = image.shape[1] * image.shape[2] * image.shape[3]
        parts: dict[str, Tensor] = {}
        total = image.new_zeros(())
        for index, (target, c) in enumerate(zip(self.targets, self.weights, strict=True)):
            value = (c.to(image.dtype) * (image - target.to(image.dtype)).square()).sum() / d
            label = self.labels[index] if index < len(self.labels) else str(index + 1)
            parts[f"temporal:{label}"] = value
            total = total + value
        return total, parts


# --- .flo files --------------------------------------------------------------------------------------------------

def read_flo(path: str | os.PathLike[str]) -> Tensor:
    """A Middlebury ``.flo`` file (the tag 202021.25, width and height as int32, then u, v float32 per pixel,
    row by row) as an (H, W, 2) tensor."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FlowError(f"{literal(path)}: cannot read ({literal(exc.strerror or exc)})") from None
    if len(data) < 12 or np.frombuffer(data[:4], "<f4")[0] != np.float32(_FLO_TAG):
        raise FlowError(f"{literal(path)}: not a .flo file (no PIEH tag)")
    width, height = (int(v) for v in np.frombuffer(data[4:12], "<i4"))
    if width <= 0 or height <= 0 or len(data) != 12 + 8 * width * height:
        raise FlowError(f"{literal(path)}: a .flo file of {width}x{height} should have {12 + 8 * width * height} "
                        f"bytes, not {len(data)}")
    flow = np.frombuffer(data[12:], "<f4").reshape(height, width, 2)
    return torch.from_numpy(flow.copy())


def write_flo(path: str | os.PathLike[str], flow: Tensor | np.ndarray) -> Path:
    """Write an (H, W, 2) flow as a Middlebury ``.flo`` file, atomically."""
    array = np.asarray(flow.detach().cpu().numpy() if isinstance(flow, Tensor) else flow, dtype="<f4")
    if array.ndim != 3 or array.shape[2] != 2:
        raise FlowError(f"a flow is (H, W, 2), not {array.shape}")
    height, width = array.shape[:2]
    header = np.array([_FLO_TAG], "<f4").tobytes() + np.array([width, height], "<i4").tobytes()
    with files.atomic_path(path) as tmp:
        tmp.write_bytes(header + np.ascontiguousarray(array).tobytes())
    return Path(path)
