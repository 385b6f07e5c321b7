"""Control beyond the paper: style scale, coarse-to-fine, blended styles."""

from __future__ import annotations

import pytest
import torch

import gramstyle
from gramstyle import image as imageio
from gramstyle import vgg
from gramstyle.assets import SHIPWRECK, STARRY_NIGHT, TUBINGEN
from gramstyle.config import Settings
from gramstyle.errors import SettingsError
from gramstyle.objective import style_targets
from gramstyle.stylize import _style_size, scale_schedule


def test_style_scale_and_size_set_the_style_image_size() -> None:
    base = Settings(size=512)
    assert _style_size(base, 512) == 512
    assert _style_size(base.replace(style_scale=0.5), 512) == 256
    assert _style_size(base.replace(style_scale=2.0), 256) == 512
    assert _style_size(base.replace(style_size=300), 512) == 300
    assert _style_size(base.replace(style_size=300), 256) == 150  # scaled with a coarse-to-fine stage
    with pytest.raises(SettingsError, match="--style-size or --style-scale"):
        base.replace(style_size=300, style_scale=0.5).validated()
    with pytest.raises(SettingsError, match="--style-scale"):
        base.replace(style_scale=0.0).validated()


def test_scale_schedules() -> None:
    assert scale_schedule(Settings(size=512)) == [512]
    assert scale_schedule(Settings(size=2048, scales="auto")) == [256, 512, 1024, 2048]
    assert scale_schedule(Settings(size=300, scales="auto")) == [300]
    assert scale_schedule(Settings(size=512, scales="128,256,512")) == [128, 256, 512]
    for bad in ("256,128,512", "128,256", "a,512", ""):
        with pytest.raises(SettingsError, match="--scales"):
            Settings(size=512, scales=bad).validated()
    with pytest.raises(SettingsError, match="--scale-steps needs --scales"):
        Settings(scale_steps="10").validated()
    with pytest.raises(SettingsError, match="3 counts for 2 scales"):
        gramstyle.transfer(TUBINGEN, STARRY_NIGHT, size=128, scales="64,128", scale_steps="1,2,3")


def test_coarse_to_fine_runs_every_scale_and_ends_at_the_full_size() -> None:
    seen: list[tuple[int, int, float]] = []
    result = gramstyle.transfer(TUBINGEN, STARRY_NIGHT, size=128, scales="64,128", scale_steps="10,10", steps=99,
                                callback=lambda p: seen.append((p.step, p.steps, p.losses["scale"])) and None)
    assert result.image.size == (128, 96)
    assert result.steps == 20 and [h["scale"] for h in result.history] == [64.0] * 10 + [128.0] * 10
    assert [s for s, _, _ in seen] == list(range(1, 21)) and {t for _, t, _ in seen} == {20}
    # The second scale starts where the first ended, upsampled: below a fresh start from the photo at 128 px.
    fresh = gramstyle.transfer(TUBINGEN, STARRY_NIGHT, size=128, steps=1)
    assert result.history[10]["total"] < fresh.history[0]["total"]


def test_style_scale_changes_the_targets() -> None:
    a = gramstyle.transfer(TUBINGEN, STARRY_NIGHT, size=64, steps=2)
    b = gramstyle.transfer(TUBINGEN, STARRY_NIGHT, size=64, steps=2, style_scale=2.0)
    assert a.history[0]["style"] != b.history[0]["style"]
    assert b.settings.style_scale == 2.0


def test_blend_weights_zero_one_reproduce_a_single_style_and_half_lies_between() -> None:
    net = vgg.VGGFeatures(vgg.load_caffe_weights(), ["conv1_1", "conv3_1"])
    s1, s2 = imageio.load_image(STARRY_NIGHT, 64), imageio.load_image(SHIPWRECK, 64)
    layers = ["conv1_1", "conv3_1"]
    only1, only2 = style_targets(net, [s1], layers), style_targets(net, [s2], layers)
    assert all(torch.equal(style_targets(net, [s1, s2], layers, [1.0, 0.0])[n], only1[n]) for n in layers)
    assert all(torch.equal(style_targets(net, [s1, s2], layers, [0.0, 1.0])[n], only2[n]) for n in layers)
    half = style_targets(net, [s1, s2], layers, [0.5, 0.5])
    for n in layers:
        low, high = torch.minimum(only1[n], only2[n]), torch.maximum(only1[n], only2[n])
        assert torch.all(half[n] >= low - 1e-4) and torch.all(half[n] <= high + 1e-4)
        assert torch.allclose(half[n], (only1[n] + only2[n]) / 2, rtol=1e-5, atol=1e-4)
