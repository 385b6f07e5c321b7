"""Colour preservation (Gatys, Bethge, Hertzmann & Shechtman, "Preserving Color in Neural Artistic Style
Transfer", 2016): pure functions on RGB tensors in [0, 1] of shape (1, 3, h, w).

- Luminance-only transfer (their sec. 2.2): transfer on the luminance channel of the YIQ space, the style's
  luminance matched to the content's mean and standard deviation, then the result's luminance recombined with
  the content's I and Q.
- Colour histogram matching (their sec. 2.1): the style image recoloured, p' = A p + b, so that its mean and
  covariance equal the content's, before the transfer.
"""

from __future__ import annotations

import torch
from torch import Tensor

# NTSC YIQ (FCC 1953 coefficients, as in the paper): rows give Y, I, Q from R, G, B.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.595716, -0.274453, -0.321263],
                            [0.211456, -0.522591, 0.311135]], dtype=torch.float64)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _apply(matrix: Tensor, image: Tensor) -> Tensor:
    m = matrix.to(device=image.device, dtype=image.dtype)
    return torch.einsum("ij,bjhw->bihw", m, image)


def rgb_to_yiq(image: Tensor) -> Tensor:
    return _apply(_RGB_TO_YIQ, image)


def yiq_to_rgb(image: Tensor) -> Tensor:
    return _apply(_YIQ_TO_RGB, image)


def luminance(image: Tensor) -> Tensor:
    """The Y channel as a grey RGB image (Y, Y, Y): what the network sees in luminance-only transfer."""
    y = rgb_to_yiq(image)[:, :1]
    return y.expand(-1, 3, -1, -1).contiguous()


def match_luminance(style: Tensor, content: Tensor) -> Tensor:
    """The style's luminance shifted and scaled to the content's mean and standard deviation (sec. 2.2)."""
    ys, yc = style[:, :1], content[:, :1]
    matched = (ys - ys.mean()) / ys.std().clamp_min(1e-8) * yc.std() + yc.mean()
    return matched.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def recombine(result_luminance: Tensor, content: Tensor) -> Tensor:
    """The result's luminance with the content's I and Q channels, back in RGB, clipped to [0, 1]."""
    yiq = rgb_to_yiq(content).clone()
    yiq[:, :1] = result_luminance[:, :1]
    return yiq_to_rgb(yiq).clamp(0, 1)


def _statistics(image: Tensor) -> tuple[Tensor, Tensor]:
    pixels = image.reshape(3, -1).double()
    mean = pixels.mean(dim=1, keepdim=True)
    centred = pixels - mean
    return mean, centred @ centred.T / pixels.shape[1]


def _sqrt_psd(matrix: Tensor, inverse: bool = False) -> Tensor:
    """Symmetric square root (or its inverse) of a covariance matrix, by eigendecomposition."""
    values, vectors = torch.linalg.eigh(matrix)
    values = values.clamp_min(1e-10)
    power = -0.5 if inverse else 0.5
    root: Tensor = (vectors * values.pow(power)) @ vectors.T
    return root


def color_transfer(style: Tensor, content: Tensor, method: str) -> Tensor:
    """Recolour `style` so that its pixels' mean and covariance equal the content's (sec. 2.1): p' = A p + b.

    ``pca``: A = S_c^(1/2) S_s^(-1/2) with symmetric square roots (from torch.linalg.eigh); ``chol``:
    A = L_c L_s^(-1) with Cholesky factors. Both give the content's covariance exactly; they differ in the
    rotation they leave. b = mu_c - A mu_s. The result is clipped to [0, 1], which can move the statistics
    slightly when the content's colours lie near the edges of the gamut.
    """
    mu_s, cov_s = _statistics(style)
    mu_c, cov_c = _statistics(content)
    eye = torch.eye(3, dtype=torch.float64, device=cov_s.device) * 1e-8  # keeps a flat image's factor invertible
    if method == "pca":
        a = _sqrt_psd(cov_c) @ _sqrt_psd(cov_s, inverse=True)
    elif method == "chol":
        a = torch.linalg.cholesky(cov_c + eye) @ torch.linalg.inv(torch.linalg.cholesky(cov_s + eye))
    else:
        raise ValueError(f"unknown colour matching {method!r}; use pca or chol")
    b = mu_c - a @ mu_s
    pixels = a @ style.reshape(3, -1).double() + b
    return pixels.reshape(style.shape).to(style.dtype).clamp(0, 1)
