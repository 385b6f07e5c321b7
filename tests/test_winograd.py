"""Winograd convolutions (NNPACK's F(6x6, 3x3) and gramstyle's F(4x4, 3x3)) against the direct ones: the layer,
its input gradient, VGG's features and image gradient with the real weights, which layer takes which route,
determinism, when `auto` chooses them, the memory plan, and a run's record."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gramstyle
from gramstyle.assets import STARRY_NIGHT, TUBINGEN
from gramstyle.config import Settings
from gramstyle.devices import resolve_convolution
from gramstyle.errors import SettingsError
from gramstyle.objective import Objective
from gramstyle.tiling import estimate
from gramstyle.vgg import VGGFeatures, load_weights, winograd

needs_nnpack = pytest.mark.skipif(not winograd.available(), reason="this PyTorch has no NNPACK")

STYLE_AND_CONTENT = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1"]
CPU = torch.device("cpu")


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def net() -> VGGFeatures:
    return VGGFeatures(load_weights(Settings().weights))


def _nnpack(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return winograd.conv3x3(x.contiguous(), weight, bias, winograd.transposed(weight))


def _f4(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return winograd.conv3x3_f4(x, winograd.f4_filters(weight), bias)


@pytest.mark.parametrize(("algorithm", "layout"), [pytest.param(_nnpack, torch.contiguous_format, marks=needs_nnpack),
                                                   (_f4, torch.contiguous_format), (_f4, torch.channels_last)])
@pytest.mark.parametrize(("channels_in", "channels_out", "height", "width"),
                         [(64, 64, 48, 53), (128, 256, 40, 45), (256, 128, 17, 22), (8, 4, 4, 8), (5, 3, 1, 2)])
def test_the_layer_and_its_input_gradient_equal_the_direct_convolution(algorithm, layout, channels_in: int,
                                                                        channels_out: int, height: int,
                                                                        width: int) -> None:
    # Sides that are and are not multiples of F(4x4, 3x3)'s tile, and maps smaller than one tile.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels_in, height, width, generator=generator).contiguous(memory_format=layout)
    weight = torch.randn(channels_out, channels_in, 3, 3, generator=generator) / (3 * channels_in**0.5)
    bias = torch.randn(channels_out, generator=generator)
    upstream = torch.randn(1, channels_out, height, width, generator=generator)

    def run(conv):  # the output and the input gradient of <upstream, conv(x)>, in float64 for the reference
        leaf = x.clone().requires_grad_(True)
        y = conv(leaf)
        y.backward(upstream.to(y.dtype))
        return y.detach(), leaf.grad

    y_exact, g_exact = run(lambda v: F.conv2d(v.double(), weight.double(), bias.double(), padding=1))
    y_direct, g_direct = run(lambda v: F.conv2d(v, weight, bias, padding=1))
    y_wino, g_wino = run(lambda v: algorithm(v, weight, bias))
    # both float32 routes are within a few 1e-6 of float64
    assert _relative(y_wino.double(), y_exact) < 1e-5 and _relative(y_direct.double(), y_exact) < 3e-6
    assert _relative(g_wino.double(), g_exact) < 1e-5 and _relative(g_direct.double(), g_exact) < 3e-6
    assert g_wino.shape == x.shape and y_wino.shape == y_direct.shape


def test_f4_filters_are_g_g_gt() -> None:
    # G g G^T for one filter by hand: the transform of a filter of ones is G 1 1^T G^T, G's row sums squared.
    weight = torch.ones(1, 1, 3, 3)
    rows = torch.tensor([1 / 4, -1 / 2, -1 / 6, 7 / 24, 3 / 24, 1], dtype=torch.float64)
    expected = torch.outer(rows, rows).reshape(36, 1, 1).float()
    assert torch.allclose(winograd.f4_filters(weight), expected, rtol=1e-6, atol=0)
    # Every filter and channel pair lands in its place, to float32's rounding of the float64 product.
    weight = torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    g = torch.tensor(winograd._G, dtype=torch.float64)
    exact = torch.einsum("au,oiuv,bv->abio", g, weight.double(), g).reshape(36, 4, 5)
    assert (winograd.f4_filters(weight).double() - exact).abs().max() < 1e-6 * exact.abs().max()


@pytest.mark.parametrize("shape", [(96, 128), pytest.param((256, 400), marks=needs_nnpack)])
def test_vgg_features_and_image_gradient_follow_the_direct_network(net: VGGFeatures, shape) -> None:
    # 96 x 128: F(4x4, 3x3) for conv3_x, the rest direct; 256 x 400: NNPACK to conv2_2, then F(4x4, 3x3)
    image = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(1))

    def run(use: bool):
        leaf = image.clone().requires_grad_(True)
        features = net(leaf, STYLE_AND_CONTENT, winograd=use)
        loss = sum(((f.double() ** 2).mean() for f in features.values()), torch.zeros((), dtype=torch.float64))
        loss.backward()
        return {k: v.detach() for k, v in features.items()}, leaf.grad

    direct, g_direct = run(False)
    wino, g_wino = run(True)
    # 3 input channels: always direct (in NNPACK's layout when it follows, so rounded in another order)
    assert _relative(wino["conv1_1"], direct["conv1_1"]) < 1e-6
    for name in STYLE_AND_CONTENT[1:]:
        assert _relative(wino[name], direct[name]) < 2e-5, name
    assert _relative(wino["conv3_1"], direct["conv3_1"]) > 0  # conv3_1 took a Winograd route
    assert 0 < _relative(g_wino, g_direct) < 2e-3  # it is another computation, and a close one


def test_which_layers_take_which_route() -> None:
    big, small = 512 * 384, 256 * 192
    nnpack = "nnpack" if winograd.available() else "f4"
    assert winograd.route(3, 64, 384, 512, big) == "direct"  # conv1_1
    assert winograd.route(64, 64, 384, 512, big) == ("nnpack" if winograd.available() else "direct")  # conv1_2
    assert winograd.route(256, 256, 96, 128, big) == nnpack  # conv3 at 512 x 384
    assert winograd.route(512, 512, 48, 64, big) == "f4"  # conv4 at 512 x 384: below NNPACK's 4096 positions
    assert winograd.route(512, 512, 24, 32, big) == "f4"  # conv5_1 at 512 x 384
    # Below 100,000 pixels no NNPACK: the step's other layers in its layout cost more than it saved
    assert winograd.route(64, 64, 192, 256, small) == "direct"
    assert winograd.route(128, 128, 96, 128, small) == "direct"  # 128 output channels: oneDNN's
    assert winograd.route(128, 256, 48, 64, small) == "f4"  # conv3_1 at 256 x 192
    assert winograd.route(512, 512, 16, 16, small) == "f4" and winograd.route(512, 512, 15, 16, small) == "direct"


def test_winograd_evaluations_are_deterministic(net: VGGFeatures) -> None:
    image = torch.rand(1, 3, 80, 96, generator=torch.Generator().manual_seed(2))
    grads = []
    for _ in range(2):
        leaf = image.clone().requires_grad_(True)
        features = net(leaf, STYLE_AND_CONTENT, winograd=True)
        sum(f.square().sum() for f in features.values()).backward()
        grads.append(leaf.grad)
    assert torch.equal(grads[0], grads[1])


def test_auto_chooses_winograd_only_for_large_untiled_fp32_on_avx2() -> None:
    avx2 = torch.backends.cpu.get_cpu_capability() == "AVX2"
    large, small = 192 * 144, 128 * 96
    assert resolve_convolution("auto", CPU, torch.float32, tiled=False, pixels=large) is avx2
    assert resolve_convolution("auto", CPU, torch.float32, tiled=False, pixels=small) is False
    assert resolve_convolution("auto", CPU, torch.float32, tiled=True, pixels=large) is False
    assert resolve_convolution("auto", CPU, torch.bfloat16, tiled=False, pixels=large) is False
    assert resolve_convolution("direct", CPU, torch.float32, tiled=False, pixels=large) is False
    assert resolve_convolution("winograd", CPU, torch.float32, tiled=False, pixels=small) is True
    assert resolve_convolution("winograd", CPU, torch.float32, tiled=True, pixels=small) is False  # tiles: exact
    with pytest.raises(SettingsError, match="convolution") as error:
        resolve_convolution("winograd", CPU, torch.bfloat16, tiled=False, pixels=large)
    assert error.value.field == "convolution"
    with pytest.raises(SettingsError, match="convolution"):
        Settings(convolution="fft").validated()  # type: ignore[arg-type]


def test_the_memory_plan_counts_the_workspace(net: VGGFeatures) -> None:
    args = (net, (1536, 2048), STYLE_AND_CONTENT, ["conv4_2"], torch.float32)
    direct = estimate(*args, None, 50, "lbfgs")
    wino = estimate(*args, None, 50, "lbfgs", winograd=True)
    # the largest map (64 channels at 2048 x 1536) is 0.75 GiB; its transforms about 3.6 times that
    assert 2.5 * 2**30 < wino.activations - direct.activations < 3 * 2**30
    # conv1_2 ... conv5_1 take NNPACK's route at this size: two copies of their filters, about 2 x 52 MB
    assert 90e6 < wino.network - direct.network < 110e6
    small = [estimate(net, (96, 128), STYLE_AND_CONTENT, ["conv4_2"], torch.float32, None, 50, "lbfgs", winograd=w)
             for w in (False, True)]
    # at 128 x 96 conv3_1 ... conv3_4 take F(4x4, 3x3): their filters transformed, 36 values for 9
    assert small[1].network - small[0].network == 4 * 4 * 9 * (128 * 256 + 3 * 256 * 256)
    assert estimate(*args, 1024, 50, "lbfgs", winograd=True) == estimate(*args, 1024, 50, "lbfgs")  # tiles: direct


def test_exact_evaluations_are_direct_whatever_the_route(net: VGGFeatures) -> None:
    content = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(3))
    style = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    image = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(5))
    settings = Settings()
    direct, wino = (Objective.for_settings(net, settings, content_image=content, style_images=[style], winograd=w)
                    for w in (False, True))
    with torch.no_grad():
        assert float(wino(image, exact=True).total) == float(direct(image).total)
        assert float(wino(image).total) != float(direct(image).total)
        assert float(wino(image).total) == pytest.approx(float(direct(image).total), rel=1e-4)


@pytest.mark.slow
def test_a_winograd_run_records_it_and_repeats_its_bytes() -> None:
    runs = [gramstyle.transfer(TUBINGEN, STARRY_NIGHT, size=96, steps=15, precision="fp32", convolution=c)
            for c in ("winograd", "winograd", "direct")]
    wino, again, direct = runs
    assert wino.convolutions == ["winograd"] and direct.convolutions == ["direct"]
    assert wino.image.tobytes() == again.image.tobytes()
    assert wino.image.tobytes() != direct.image.tobytes()
    # the same descent to within the rounding: the first steps' losses within 0.5%; then the two part as any two
    # L-BFGS descents from slightly different gradients do (measured after 15 steps: 2.4%, and either ahead)
    for a, b in zip(wino.history[:6], direct.history[:6], strict=True):
        assert abs(a["total"] / b["total"] - 1) < 0.005
    assert abs(wino.losses["total"] / direct.losses["total"] - 1) < 0.05
