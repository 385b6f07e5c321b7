"""Exact tiling: tiled loss and gradient equal the untiled ones (real VGG-19 weights)."""

from __future__ import annotations

import pytest
import torch

from gramstyle import assets, images, tiling, vgg
from gramstyle.config import PAPER_STYLE_LAYERS
from gramstyle.layers import VGG19
from gramstyle.objective import Objective, content_targets

PAPER_STYLE = [name for name, _ in PAPER_STYLE_LAYERS]


@pytest.fixture(scope="module")
def weights() -> vgg.LoadedWeights:
    return vgg.load_weights("caffe")


def _inputs(size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    content = images.load_image(assets.DEMO_CONTENT, size).to(dtype)
    style = images.load_image(assets.DEMO_STYLE, size).to(dtype)
    generator = torch.Generator().manual_seed(0)
    x = (0.7 * content + 0.15 + 0.05 * torch.rand(content.shape, generator=generator, dtype=dtype)).clamp(0, 1)
    return content, style, x


def _compare(net: vgg.VGGFeatures, size: int, tile: int, dtype: torch.dtype, style_layers: list[str],
             content_layers: list[str]) -> tuple[float, float, int]:
    content, style, x = _inputs(size, dtype)
    style_w = {name: 1 / len(style_layers) for name in style_layers}
    content_w = {name: 1.0 for name in content_layers}
    untiled = Objective.build(net, content_image=content, content_layers=list(content_w.items()),
                              style_images=[style], style_layers=list(style_w.items()), style_blend=None,
                              alpha=1.0, beta=1e3, tv_weight=1e-3)
    image = x.clone().requires_grad_(True)
    expected = untiled(image)
    (grad,) = torch.autograd.grad(expected.total, image)
    tiled = tiling.TiledObjective.build(net, tile, content_image=content, content_weights=content_w,
                                        style_images=[style], style_weights=style_w, style_blend=None,
                                        alpha=1.0, beta=1e3, tv_weight=1e-3)
    got, tiled_grad = tiled.value_and_grad(x)
    for name, value in expected.floats().items():
        assert got.floats()[name] == pytest.approx(value, rel=1e-5, abs=1e-12), name
    loss_rel = abs(float(got.total) - float(expected.total.detach())) / abs(float(expected.total.detach()))
    grad_rel = float((tiled_grad - grad).norm() / grad.norm())
    return loss_rel, grad_rel, len(tiling.plan((x.shape[2], x.shape[3]), tile, tiled.layers))


def test_interiors_partition_every_layer() -> None:
    for shape in ((200, 173), (64, 64), (513, 300)):
        for tile in (16, 48, 64):
            tiles = tiling.plan(shape, tile, PAPER_STYLE)
            for layer in VGG19[:13]:  # up to conv5_1
                seen = torch.zeros(shape[0] // layer.stride, shape[1] // layer.stride, dtype=torch.int32)
                for t in tiles:
                    assert all(v % 16 == 0 for v in t.window[::2])  # windows start aligned
                    rows, cols = t.positions(layer.stride)
                    seen[rows, cols] += 1
                    lr, lc = t.local(layer.stride)
                    assert (lr.stop - lr.start, lc.stop - lc.start) == (rows.stop - rows.start, cols.stop - cols.start)
                assert bool((seen == 1).all()), (shape, tile, layer.name)


def test_margin_is_the_reach_of_the_deepest_layer() -> None:
    assert tiling.margin_for(PAPER_STYLE) == 80  # conv5_1: (156 - 16) / 2 = 70, aligned up
    assert 2 * tiling.margin_for(PAPER_STYLE) >= VGG19[12].receptive_field  # neighbours overlap by its field
    with pytest.raises(Exception, match="multiple of 16"):
        tiling.plan((64, 64), 24, PAPER_STYLE)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_tiled_equals_untiled_float32_shallow(weights: vgg.LoadedWeights, pooling: str) -> None:
    # float32 (oneDNN) keeps it fast; the float64 comparisons with every paper layer are the slow tests below
    net = vgg.VGGFeatures(weights, pooling)
    loss_rel, grad_rel, count = _compare(net, 128, 32, torch.float32, ["conv1_1", "conv2_1", "conv3_1"],
                                         ["conv3_1"])
    assert count == 12  # 128 x 96
    assert loss_rel < 1e-5 and grad_rel < 1e-5


def test_tiled_content_targets_equal_untiled(weights: vgg.LoadedWeights) -> None:
    net = vgg.VGGFeatures(weights)
    content, _, _ = _inputs(128, torch.float32)
    expected = content_targets(net, content, ["conv4_2"])["conv4_2"]
    got = tiling.content_targets(net, content, ["conv4_2"], 32)["conv4_2"]
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= 1e-5 * float(expected.abs().max())


@pytest.mark.slow
def test_tiled_equals_untiled_float64_192px_64px_tiles(weights: vgg.LoadedWeights) -> None:
    net = vgg.VGGFeatures(weights).double()
    loss_rel, grad_rel, count = _compare(net, 192, 64, torch.float64, PAPER_STYLE, ["conv4_2"])
    assert count == 9  # 192 x 144: three rows of three, so interior, edge and corner tiles all occur
    assert loss_rel < 1e-5 and grad_rel < 1e-5


@pytest.mark.slow
def test_tiled_equals_untiled_float32_512px(weights: vgg.LoadedWeights) -> None:
    net = vgg.VGGFeatures(weights)
    loss_rel, grad_rel, _ = _compare(net, 512, 256, torch.float32, PAPER_STYLE, ["conv4_2"])
    assert loss_rel < 1e-5 and grad_rel < 1e-5


def test_the_activation_count_leaves_out_the_weights_in_every_precision(weights: vgg.LoadedWeights) -> None:
    # The count runs a forward with hooks on the tensors autograd saves; the network's weights (and their
    # bfloat16 copy, which the first bfloat16 forward makes) are counted once elsewhere. Counted before the copy
    # existed, it used to land among the saved tensors: 3.4 times the right bytes per pixel.
    net = vgg.VGGFeatures(weights)
    layers = [*PAPER_STYLE, "conv4_2"]
    first = tiling.activation_bytes(net, layers, torch.bfloat16)
    tiling._ACTIVATIONS.clear()
    assert tiling.activation_bytes(net, layers, torch.bfloat16) == first
    fp32 = tiling.activation_bytes(net, layers, torch.float32)
    # Every saved map and the largest one take half the bytes in bfloat16 (the image's hi + lo halves, 6
    # channels of 2 bytes against 3 of 4, are the same 12 bytes a pixel).
    assert first[0] == pytest.approx(fp32[0] / 2, rel=0.02) and first[1] == pytest.approx(fp32[1] / 2, rel=0.02)
