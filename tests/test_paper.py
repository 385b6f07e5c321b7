"""The paper's claims and its figures: the normalised network, Fig. 3's trade-off, `gramstyle figures`."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import gramstyle
from gramstyle import images as imageio
from gramstyle import vgg
from gramstyle.apps import cli
from gramstyle.apps.figures import FIG3_RATIOS, panels
from gramstyle.assets import REFERENCE_IMAGES, SHIPWRECK, STARRY_NIGHT, THE_SCREAM, TUBINGEN


@pytest.fixture(scope="module")
def normalized() -> vgg.LoadedWeights:
    return vgg.load_weights("caffe-normalized")  # cached in the session's temporary folder (conftest.py)


def test_normalised_filters_have_unit_mean_activation_on_the_reference_set(normalized) -> None:
    images = [imageio.load_image(p, vgg.normalized.NORMALIZATION_SIZE) for p in REFERENCE_IMAGES]
    original = vgg.mean_activations(vgg.load_caffe_weights(), images)
    means = vgg.mean_activations(normalized, images)
    for name, m in means.items():
        dead = original[name] == 0  # a filter that never fires keeps mean 0 (18 in conv5_4)
        # (one conv5_4 filter fires at 8.4e-7 on average: float32 rounding leaves it between 0.996 and 1.013,
        # depending on the summation order of the convolution kernels, e.g. channels-last or not)
        alive = original[name] > 1e-4
        assert torch.allclose(m[alive], torch.ones_like(m[alive]), atol=1e-3), name
        assert torch.all(m[dead] == 0) and torch.allclose(m[~dead], torch.ones_like(m[~dead]), atol=3e-2)
    assert int((original["conv5_4"] == 0).sum()) < 32


def test_normalised_features_equal_the_original_up_to_a_per_channel_scale(normalized) -> None:
    images = [imageio.load_image(p, vgg.normalized.NORMALIZATION_SIZE) for p in REFERENCE_IMAGES]
    means = vgg.mean_activations(vgg.load_caffe_weights(), images)
    x = imageio.load_image(TUBINGEN, 64)  # not the reference size: the property holds for any input
    layers = ["conv1_1", "conv3_1", "conv4_2", "conv5_1"]
    for pooling in ("avg", "max"):
        a = vgg.VGGFeatures(vgg.load_caffe_weights(), pooling)(x, layers)
        b = vgg.VGGFeatures(normalized, pooling)(x, layers)
        for name in layers:
            scale = torch.where(means[name] > 0, means[name], torch.ones_like(means[name])).view(1, -1, 1, 1)
            assert torch.allclose(b[name] * scale, a[name], rtol=1e-3, atol=1e-3 * float(a[name].abs().max()))


def test_normalised_weights_are_cached_and_reused(normalized, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(vgg, "mean_activations", lambda *a: calls.append(a) or {})
    again = vgg.load_weights("caffe-normalized")  # from the cache: mean_activations is not called
    assert not calls
    assert torch.equal(again.params["conv4_2"][0], normalized.params["conv4_2"][0])


@pytest.mark.slow
def test_fig3_row_content_loss_falls_and_style_loss_rises_with_alpha_over_beta() -> None:
    # One row of Fig. 3 (all five style layers) at 64 px with the paper's alpha/beta 1e-5 ... 1e-2, the same start
    # and steps. The photo as the start keeps the four runs in one basin, so that 80 steps suffice; the claim is
    # about the objective's trade-off, not the start.
    row = []
    for ratio in FIG3_RATIOS:
        result = gramstyle.transfer(TUBINGEN, STARRY_NIGHT, size=64, steps=80, weights="caffe-normalized",
                                    init="content", beta=1 / ratio)
        row.append((result.losses["content"], result.losses["style"]))
    contents, styles = zip(*row, strict=True)
    assert list(contents) == sorted(contents, reverse=True), row
    assert list(styles) == sorted(styles), row


PHOTOS = Path(__file__).parent / "data"  # not bundled with the package: small copies, credits in data/CREDITS.md


@pytest.mark.slow
@pytest.mark.parametrize(("photo", "painting", "size", "ratios"),
                         [("chelsea.png", THE_SCREAM, 96, (FIG3_RATIOS[2], FIG3_RATIOS[3])),
                          ("coffee.png", SHIPWRECK, 128, (FIG3_RATIOS[1], FIG3_RATIOS[-1]))])
def test_fig3_trade_off_at_small_sizes_on_unbundled_photos(photo: str, painting: Path, size: int,
                                                           ratios: tuple[float, ...]) -> None:
    """Fig. 3's claim with the default settings, where the optimizer once got stuck (at 96 px the image for 1e-2
    scored lower on both losses than the one for 1e-3, by 30%): more alpha/beta, less content loss and more style
    loss, after 300 steps. Neighbouring ratios may tie within 2% where the style term dominates; across the row
    the trade-off must be large. At 96 px the two ratios that once failed, 1e-3 and 1e-2 (measured: content x0.60,
    style x2.3); at 128 px the row's ends 1e-4 and 1e-2 (1e-5 ends at the style loss's floor with 1e-4). Two
    ratios each, for the suite's time."""
    row = []
    for ratio in ratios:
        result = gramstyle.transfer(PHOTOS / photo, painting, size=size, steps=300, beta=1 / ratio, precision="fp32")
        row.append((result.losses["content"], result.losses["style"]))
    contents, styles = zip(*row, strict=True)
    assert all(later <= 1.02 * earlier for earlier, later in itertools.pairwise(contents)), row
    assert all(later >= 0.98 * earlier for earlier, later in itertools.pairwise(styles)), row
    assert contents[-1] < 0.8 * contents[0] and styles[-1] > 1.5 * styles[0], row


def test_figure_panels_follow_the_paper() -> None:
    all_panels = panels(size=512, steps=500)
    fig1 = [p for p in all_panels if p.figure == "fig1"]
    assert [p.settings.content_layers for p in fig1 if p.task == "content"] == [
        ((f"conv{b}_1", 1.0),) for b in range(1, 6)]
    subsets = [[n for n, _ in p.settings.style_layers] for p in fig1 if p.task == "texture"]
    assert subsets == [[f"conv{b}_1" for b in range(1, k + 1)] for k in range(1, 6)]
    fig2 = {p.id: p for p in all_panels if p.figure == "fig2"}
    assert sorted(fig2) == ["fig2_B_turner", "fig2_C_van_gogh", "fig2_D_munch"]  # no Picasso unless given
    assert all(p.settings.alpha / p.settings.beta == pytest.approx(1e-3) for p in fig2.values())
    with_picasso = [p for p in panels(picasso="nude.jpg") if p.id.startswith("fig2_E")]
    assert with_picasso[0].settings.alpha / with_picasso[0].settings.beta == pytest.approx(1e-4)
    fig3 = [p for p in all_panels if p.figure == "fig3"]
    ratios = sorted({p.settings.alpha / p.settings.beta for p in fig3})
    assert len(fig3) == 20 and ratios == pytest.approx(list(FIG3_RATIOS))
    assert all(p.settings.weights == "caffe-normalized" and p.settings.init == "noise" for p in all_panels)


@pytest.mark.slow
def test_figures_command_smoke_and_resume(tmp_path, capsys) -> None:
    out = tmp_path / "figs"
    assert cli.main(["figures", "--size", "64", "--steps", "3", "-q", "-o", str(out)]) == 0
    for name in ("fig1.png", "fig2.png", "fig3.png", "results.json"):
        assert (out / name).is_file()
    results = json.loads((out / "results.json").read_text())["panels"]
    assert len(results) == 10 + 3 + 20
    assert all(r["steps"] == 3 and r["final_losses"]["total"] > 0 for r in results.values())
    # Resumable: a rerun finds every panel done and changes none of them.
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "panels").iterdir()}
    assert cli.main(["figures", "--size", "64", "--steps", "3", "-q", "-o", str(out), "--only", "fig1"]) == 0
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (out / "panels").iterdir()}
    assert capsys.readouterr().err == ""


def test_figures_command_refuses_bad_values(tmp_path, capsys) -> None:
    assert cli.main(["figures", "-o", str(tmp_path / "f"), "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err
    assert cli.main(["figures", "-o", str(tmp_path / "f"), "--picasso", str(tmp_path / "none.jpg")]) == 2
    assert "none.jpg" in capsys.readouterr().err
    assert not (tmp_path / "f" / "panels").exists() or not any((tmp_path / "f" / "panels").iterdir())


def _grey(im) -> np.ndarray:
    return np.asarray(im.convert("L"), dtype=np.float64)


def correlation_length(im, level: float = 0.5) -> int:
    """Radius (px) at which the image's radially averaged autocorrelation falls below `level`: the size of
    its structures."""
    x = _grey(im)
    x = x - x.mean()
    ac = np.real(np.fft.ifft2(np.abs(np.fft.fft2(x)) ** 2))
    ac /= ac[0, 0]
    h, w = x.shape
    yy, xx = np.meshgrid(np.minimum(np.arange(h), h - np.arange(h)), np.minimum(np.arange(w), w - np.arange(w)),
                         indexing="ij")
    r = np.sqrt(yy**2 + xx**2).round().astype(int)
    profile = np.bincount(r.ravel(), ac.ravel()) / np.bincount(r.ravel())
    return int(np.nonzero(profile < level)[0][0])


@pytest.mark.slow
def test_fig1_style_reconstructions_lose_the_layout_and_grow_in_scale() -> None:
    # Measured on the 512 px gallery (docs/gallery.md): correlation with the painting |r| <= 0.10 for all five
    # subsets, correlation length 4, 9, 11, 12, 10 px. At 128 px the deep subsets see the whole picture
    # through their receptive fields and start to copy its layout (r = 0.52 for all five), so this test
    # checks the first three subsets.
    painting = imageio.to_pil(imageio.load_image(STARRY_NIGHT, 128))
    layers = ("conv1_1", "conv2_1", "conv3_1")
    results = [gramstyle.synthesize_texture(STARRY_NIGHT, layers=layers[:k], size=128, steps=200,
                                            weights="caffe-normalized") for k in (1, 3)]
    for result in results:
        assert result.losses["style"] < result.history[0]["style"] / 1000
    r = np.corrcoef(_grey(results[0].image).ravel(), _grey(painting).ravel())[0, 1]
    assert abs(r) < 0.2
    assert correlation_length(results[0].image) < correlation_length(results[1].image)
