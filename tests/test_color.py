"""Colour preservation (Gatys et al. 2016): the colour transforms exactly, and the two options end to end."""

from __future__ import annotations

import pytest
import torch

import gramstyle
from gramstyle import color
from gramstyle import images as imageio
from gramstyle.assets import STARRY_NIGHT, TUBINGEN


def _stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = image.reshape(3, -1).double()
    mean = pixels.mean(1, keepdim=True)
    return mean, (pixels - mean) @ (pixels - mean).T / pixels.shape[1]


def test_yiq_round_trip_and_grey_has_no_chroma() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    assert torch.allclose(color.yiq_to_rgb(color.rgb_to_yiq(x)), x, atol=1e-12)
    grey = torch.full((1, 3, 2, 2), 0.4, dtype=torch.float64)
    yiq = color.rgb_to_yiq(grey)
    assert torch.allclose(yiq[:, 0], grey[:, 0]) and yiq[:, 1:].abs().max() < 1e-6


def test_luminance_matching_takes_the_content_mean_and_std() -> None:
    style = imageio.load_image(STARRY_NIGHT, 64)
    content = imageio.load_image(TUBINGEN, 64)
    matched = color.match_luminance(color.luminance(style), color.luminance(content))
    yc = color.luminance(content)[:, 0]
    assert matched[:, 0].mean().item() == pytest.approx(yc.mean().item(), abs=2e-3)
    assert matched[:, 0].std().item() == pytest.approx(yc.std().item(), abs=2e-3)


@pytest.mark.parametrize("method", ["pca", "chol"])
def test_color_transfer_gives_the_content_mean_and_covariance(method: str) -> None:
    # A style that is well inside the gamut once recoloured, so that clipping moves nothing.
    torch.manual_seed(1)
    style = 0.3 + 0.2 * torch.rand(1, 3, 32, 32) * torch.tensor([1.0, 0.5, 0.2]).view(1, 3, 1, 1)
    content = 0.5 + 0.1 * torch.randn(1, 3, 32, 32).clamp(-2, 2)
    mix = torch.tensor([[1.0, 0.3, 0.0], [0.0, 1.0, 0.2], [0.1, 0.0, 1.0]])
    content = (torch.einsum("ij,bjhw->bihw", mix, content - 0.5) * 0.8 + 0.5).clamp(0, 1)
    recoloured = color.color_transfer(style, content, method)
    (mu_r, cov_r), (mu_c, cov_c) = _stats(recoloured), _stats(content)
    assert torch.allclose(mu_r, mu_c, atol=1e-5)
    assert torch.allclose(cov_r, cov_c, atol=1e-5)


def test_pca_and_cholesky_differ_but_both_match() -> None:
    style = imageio.load_image(STARRY_NIGHT, 64)
    content = imageio.load_image(TUBINGEN, 64)
    a = color.color_transfer(style, content, "pca")
    b = color.color_transfer(style, content, "chol")
    assert not torch.allclose(a, b, atol=1e-3)
    for recoloured in (a, b):  # clipping at the gamut's edge moves the statistics a little on real images
        assert torch.allclose(_stats(recoloured)[0], _stats(content)[0], atol=0.02)
    with pytest.raises(ValueError, match="pca or chol"):
        color.color_transfer(style, content, "lab")


@pytest.mark.slow
def test_luminance_transfer_keeps_the_content_chroma() -> None:
    result = gramstyle.transfer(TUBINGEN, STARRY_NIGHT, size=64, steps=40, preserve_color="luminance")
    out = color.rgb_to_yiq(imageio.to_tensor(result.image))
    content = color.rgb_to_yiq(imageio.load_image(TUBINGEN, 64))
    # I and Q are the content's up to 8-bit rounding and the clipping of the few pixels pushed out of gamut
    assert (out[:, 1:] - content[:, 1:]).abs().mean() < 0.01
    assert (out[:, 0] - content[:, 0]).abs().mean() > 0.008  # while the luminance was stylized (8-bit: 0.002)


@pytest.mark.slow
def test_histogram_option_brings_the_output_colours_closer_to_the_content() -> None:
    content = imageio.load_image(TUBINGEN, 64)
    plain = gramstyle.transfer(TUBINGEN, STARRY_NIGHT, size=64, steps=30)
    kept = gramstyle.transfer(TUBINGEN, STARRY_NIGHT, size=64, steps=30, preserve_color="histogram")
    assert kept.settings.preserve_color == "histogram"

    def distance(image) -> float:
        (mu_o, cov_o), (mu_c, cov_c) = _stats(imageio.to_tensor(image)), _stats(content)
        return float((mu_o - mu_c).norm() + (cov_o - cov_c).norm())

    assert distance(kept.image) < distance(plain.image)
