"""The speed options: reduced precision (--precision bf16: only the network's arithmetic changes, never the
objective) and the recoloured start (--init recolored)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

import gramstyle
from gramstyle import images as imageio
from gramstyle.apps.cli import main
from gramstyle.assets import DEMO_CONTENT, DEMO_STYLE
from gramstyle.config import Settings
from gramstyle.devices import resolve_precision
from gramstyle.errors import SettingsError
from gramstyle.objective import Objective
from gramstyle.vgg import VGGFeatures, load_weights

pytestmark = pytest.mark.slow

# Emulated bfloat16 (CPUs without AVX-512 BF16 or AMX) is many times slower than float32: the quality guard's
# four bf16 runs took over 20 minutes on an AVX2-only machine. Cheap bf16 checks run everywhere.
needs_native_bf16 = pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                                       reason="bfloat16 is emulated on this CPU (no AVX-512 BF16 or AMX)")


@pytest.fixture(scope="module")
def objectives() -> tuple[Objective, Objective, torch.Tensor]:
    settings = Settings()
    content = imageio.load_image(DEMO_CONTENT, 96)
    style = imageio.load_image(DEMO_STYLE, 96)
    net = VGGFeatures(load_weights("caffe"))

    def build(precision: torch.dtype) -> Objective:
        return Objective.for_settings(net, settings, content_image=content, style_images=[style],
                                      precision=precision)

    return build(torch.float32), build(torch.bfloat16), content


def _targets(objective: Objective, term: str) -> dict[str, torch.Tensor]:
    return next(t for t, _ in objective.terms if t.name == term).targets  # type: ignore[attr-defined]


def test_targets_are_float32_whatever_the_precision(objectives) -> None:
    full, half, _ = objectives
    for name, target in _targets(full, "style").items():
        assert _targets(half, "style")[name].dtype == torch.float32
        assert torch.equal(_targets(half, "style")[name], target)
    assert torch.equal(_targets(half, "content")["conv4_2"], _targets(full, "content")["conv4_2"])


def test_bf16_loss_and_gradient_track_fp32(objectives) -> None:
    full, half, content = objectives
    image = (content + 0.1 * torch.randn_like(content)).clamp(0, 1)
    results = []
    for objective in (full, half):
        x = image.clone().requires_grad_(True)
        evaluation = objective(x)
        (grad,) = torch.autograd.grad(evaluation.total, x)
        results.append((float(evaluation.total.detach()), grad.flatten(), evaluation.total))
    (f32, g32, _), (f16, g16, e16) = results
    features = half.features(image)
    assert features["conv1_1"].dtype == torch.bfloat16
    assert features["conv4_2"].dtype == torch.bfloat16
    assert e16.dtype == torch.float32  # losses in float32
    assert abs(f16 - f32) / f32 < 0.02
    cosine = float(g16 @ g32 / (g16.norm() * g32.norm()))
    assert cosine > 0.98
    assert f16 != f32  # bf16 really ran: its rounding shows
    # exact=True evaluates in float32 whatever the objective's precision
    assert float(half(image, exact=True).total) == pytest.approx(f32, rel=1e-6)


@needs_native_bf16
def test_bf16_transfer_reaches_the_fp32_loss() -> None:
    """The quality guard: after the same steps, the float32 scores of bf16 runs match those of fp32 runs.

    At these small sizes two runs part after a few steps and either may end up to 14% lower (measured at 96
    and 128 px, 40 and 80 steps: bf16/fp32 from 0.86 to 1.08, mean 0.99), so the guard is on the geometric
    mean over four runs."""
    ratios = []
    for size in (96, 128):
        for init in ("content", "recolored"):
            runs = {p: gramstyle.transfer(DEMO_CONTENT, DEMO_STYLE, size=size, steps=60, init=init, precision=p)
                    for p in ("fp32", "bf16")}
            assert runs["fp32"].precision == "fp32" and runs["bf16"].precision == "bf16"
            for run in runs.values():
                assert run.losses["total"] < 0.2 * run.history[0]["total"]  # both really optimized
            ratios.append(runs["bf16"].losses["total"] / runs["fp32"].losses["total"])
    assert math.prod(ratios) ** (1 / len(ratios)) < 1.1, ratios


def _cpu_flags() -> set[str]:
    with open("/proc/cpuinfo", encoding="ascii") as f:
        return set(next(line for line in f if line.startswith("flags")).split(":")[1].split())


def test_resolve_precision() -> None:
    """auto is bf16 exactly where the processor says it has native bf16 (from /proc/cpuinfo, not from the
    probe the code calls), and fp32 when oneDNN is capped to AVX2 as on an AVX2-only machine."""
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == torch.float32
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    native = bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    if "ONEDNN_MAX_CPU_ISA" not in os.environ:
        assert resolve_precision("auto", cpu) == (torch.bfloat16 if native else torch.float32)
    assert resolve_precision("auto", torch.device("mps")) == torch.float32
    capped = subprocess.run(
        [sys.executable, "-c", "import torch; from gramstyle.devices import resolve_precision; "
         "print(resolve_precision('auto', torch.device('cpu')))"],
        env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
        capture_output=True, text=True, check=True)
    assert capped.stdout.strip() == "torch.float32"


def test_paper_tasks_default_to_fp32() -> None:
    assert Settings.for_task("content").precision == "fp32"
    assert Settings.for_task("texture").precision == "fp32"
    assert Settings.for_task("transfer").precision == "auto"
    with pytest.raises(SettingsError, match="precision"):
        Settings(precision="fp16").validated()  # type: ignore[arg-type]


def test_cli_records_the_resolved_precision(tmp_path, capsys) -> None:
    out = tmp_path / "out.png"
    assert main(["demo", "--size", "64", "--steps", "2", "--precision", "bf16", "-q", "-o", str(out)]) == 0
    record = json.loads((tmp_path / "out.png.json").read_text())
    assert record["precision"] == "bf16" and record["settings"]["precision"] == "bf16"
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--size", "64", "--steps", "2", "--precision", "half", "-q", "-o", str(out)])
    assert exit_info.value.code == 2
    assert "--precision" in capsys.readouterr().err


def test_recolored_start_has_the_paintings_colour_statistics() -> None:
    from gramstyle.start import initial_image

    content = imageio.load_image(DEMO_CONTENT, 64)
    style = imageio.load_image(DEMO_STYLE, 80)
    start = initial_image("recolored", tuple(content.shape[2:]), 0, content, [style], 10**8, "chol")
    assert start.shape == content.shape
    pixels, target = start.reshape(3, -1).double(), style.reshape(3, -1).double()
    assert torch.allclose(pixels.mean(1), target.mean(1), atol=0.02)
    assert torch.allclose(torch.cov(pixels), torch.cov(target), atol=0.01)
    assert not torch.allclose(pixels.mean(1), content.reshape(3, -1).double().mean(1), atol=0.05)
    # without a style image there is nothing to recolour to: the photo itself
    assert torch.equal(initial_image("recolored", tuple(content.shape[2:]), 0, content, [], 10**8, "chol"), content)


def test_bf16_network_sees_changes_below_one_bf16_step_of_the_image() -> None:
    """The image enters the bf16 network as hi + lo halves: a change of 1e-3 (0.26 caffe units, below
    bfloat16's step of 0.5-1 there) still moves conv1_1's response as float32 says it should."""
    net = VGGFeatures(load_weights("caffe"))
    x = imageio.load_image(DEMO_CONTENT, 64)
    bump = torch.zeros_like(x)
    bump[..., 20:40, 20:40] = 1e-3
    c1 = ["conv1_1"]
    exact = (net(x + bump, c1)["conv1_1"] - net(x, c1)["conv1_1"]).double()
    low = net(x + bump, c1, torch.bfloat16)["conv1_1"].double() - net(x, c1, torch.bfloat16)["conv1_1"].double()
    assert float(exact.abs().sum()) > 1000
    assert float(low.sum()) == pytest.approx(float(exact.sum()), rel=0.1)
    assert float((low * exact).sum() / (low.norm() * exact.norm())) > 0.8
    full = net(x, c1)["conv1_1"]
    half = net(x, c1, torch.bfloat16)["conv1_1"]
    assert half.dtype == torch.bfloat16
    assert float((half.float() - full).abs().max()) <= 0.01 * float(full.abs().max())


_FAULTS_PER_REALLOCATION = """
import resource, sys, torch
from gramstyle.devices import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):  # the heap grows to its steady size (glibc: its adaptive threshold settles)
    torch.empty(12 << 20).fill_(1.0)
before = faults()
for _ in range(20):  # 48 MB, as a map of 64 channels at 512 x 341 px, freed and allocated again
    torch.empty(12 << 20).fill_(1.0)
print((faults() - before) / 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_keep_freed_memory_spares_the_page_faults_of_reallocation() -> None:
    def faults(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", _FAULTS_PER_REALLOCATION, mode], capture_output=True,
                             text=True, check=True)
        return float(out.stdout)

    # 48 MB is 11,700 pages of 4 KiB: each one faulted in again per allocation with glibc's defaults
    assert faults("default") > 5000
    assert faults("keep") < 100
