"""The command line end to end: every subcommand succeeds and records its run; every bad input is refused.

Most calls run `gramstyle.apps.cli.main` in-process (fast: the weights are loaded once); a few run the real
`python -m gramstyle.apps.cli` / `python -m gramstyle` to prove exit codes and a clean stderr. Images are the
bundled Tübingen photo and The Starry Night at 64 px, with a handful of steps.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import gramstyle
from gramstyle.apps import cli
from gramstyle.config import Settings
from gramstyle.vgg import CAFFE_WEIGHTS_SHA256

CONTENT = str(cli.DEMO_CONTENT)  # 512x384: 64x48 at --size 64
STYLE = str(cli.DEMO_STYLE)
FAST = ["--size", "64", "--steps", "5"]


# --- helpers ----------------------------------------------------------------------------------------------------

def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`gramstyle ARGV` in-process: (exit status, stdout, stderr). argparse's errors exit via SystemExit."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_subprocess(*argv: str, cwd: Path, module: str = "gramstyle.apps.cli") -> subprocess.CompletedProcess[str]:
    # One thread: on a small, busy machine torch's thread pool can spin against other processes (measured: 1.8 s
    # become 11 s on 2 loaded cores). The results do not depend on it.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """The in-process runs on one thread too (see `run_subprocess`); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def error_lines(stderr: str) -> list[str]:
    """stderr without warnings (which a bad input may legitimately add) and blank lines."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("gramstyle: warning")]


def assert_one_line_error(code: int, stderr: str, names: list[str]) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert "error" in lines[0], lines[0]
    for name in names:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file and folder under `root` (hidden ones too) with the bytes of each file."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def read_record(output: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(str(output) + ".json").read_text(encoding="utf-8"))
    return data


def assert_rgb8(path: Path, size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        assert image.mode == "RGB"  # 8 bits per channel, three channels
        assert image.size == size
        pixels = np.asarray(image)
    assert pixels.dtype == np.uint8
    assert pixels.shape == (size[1], size[0], 3)
    return pixels


def assert_common_record(record: dict[str, Any], output: Path, task: str, size: tuple[int, int]) -> None:
    assert record["task"] == task
    assert record["output"] == str(output)
    assert record["size"] == list(size)
    assert record["seed"] == record["settings"]["seed"]
    assert record["versions"]["torch"] == torch.__version__
    assert record["versions"]["gramstyle"] == gramstyle.__version__
    assert record["weights"]["sha256"] == CAFFE_WEIGHTS_SHA256
    assert record["weights"]["source"] == "caffe"
    assert record["device"].split(":")[0] in ("cpu", "cuda", "mps")
    losses = record["final_losses"]
    assert {"total", "content", "style"} <= set(losses)
    assert all(math.isfinite(v) for v in losses.values())
    # every setting is there, resolved: the record rebuilds the run's Settings
    Settings.from_dict(record["settings"]).validated()
    assert set(record["settings"]) == set(Settings().to_dict())


# --- success: every subcommand -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_transfer_writes_image_record_log_and_intermediates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, log = tmp_path / "out.png", tmp_path / "log.csv"
    code, stdout, stderr = run_cli(capsys, "transfer", CONTENT, STYLE, *FAST, "--seed", "3", "-o", str(out),
                                   "--log", str(log), "--save-every", "2")
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert f"wrote {out}" in stderr  # not --quiet: a summary line (and the progress bar) on stderr
    assert stdout == ""
    assert_rgb8(out, (64, 48))
    # exactly these files: the image, its record, the log, the intermediates at steps 2 and 4; no temp files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "out.png", "out.png.json",
                                                          "out_step00002.png", "out_step00004.png"]
    for name in ("out_step00002.png", "out_step00004.png"):
        assert_rgb8(tmp_path / name, (64, 48))

    record = read_record(out)
    assert_common_record(record, out, "transfer", (64, 48))
    expected = Settings.for_task("transfer").replace(size=64, steps=5, seed=3)
    assert Settings.from_dict(record["settings"]) == expected
    assert record["seed"] == 3
    assert record["steps"] == 5
    assert record["stop_reason"] == "steps"
    assert record["inputs"] == {"content": CONTENT, "style": [STYLE]}
    assert record["command_line"][:2] == ["gramstyle", "transfer"]
    losses = record["final_losses"]
    for layer in ("content:conv4_2", "style:conv1_1", "style:conv2_1", "style:conv3_1", "style:conv4_1",
                  "style:conv5_1"):
        assert layer in losses

    with log.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == record["steps"] == 5  # one row per step
    assert "total" in rows[0]
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4, 5]
    assert all(math.isfinite(float(row["total"])) for row in rows)


@pytest.mark.slow
def test_demo_default_output_in_the_current_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli(capsys, "demo", *FAST, "-q")
    assert code == 0, stderr
    assert (stdout, stderr) == ("", "")  # --quiet: nothing at all on success
    out = Path("stylized.png")
    assert_rgb8(out, (64, 48))
    record = read_record(out)
    assert_common_record(record, out, "transfer", (64, 48))
    assert record["inputs"] == {"content": str(cli.DEMO_CONTENT), "style": [str(cli.DEMO_STYLE)]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stylized.png", "stylized.png.json"]


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["conv2_1", "relu2_1"])
def test_content_reconstruction(layer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "content.jpg"
    code, _, stderr = run_cli(capsys, "content", CONTENT, "--layer", layer, *FAST, "-q", "-o", str(out))
    assert code == 0, stderr
    assert stderr == ""
    assert_rgb8(out, (64, 48))
    record = read_record(out)
    assert_common_record(record, out, "content", (64, 48))
    settings = record["settings"]
    assert settings["content_layers"] == [["conv2_1", 1.0]]  # relu2_1 is recorded as conv2_1
    assert settings["style_layers"] == []
    assert settings["init"] == "noise"  # Fig. 1: from white noise
    assert "content:conv2_1" in record["final_losses"]


@pytest.mark.slow
def test_texture_synthesis_with_output_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "texture.png"
    code, _, stderr = run_cli(capsys, "texture", STYLE, "--layers", "conv1_1,conv2_1", "--output-size", "96x64",
                              *FAST, "-q", "-o", str(out))
    assert code == 0, stderr
    assert_rgb8(out, (96, 64))
    record = read_record(out)
    assert_common_record(record, out, "texture", (96, 64))
    settings = record["settings"]
    assert settings["style_layers"] == [["conv1_1", 0.5], ["conv2_1", 0.5]]  # equal, summing to 1
    assert settings["content_layers"] == []
    assert settings["output_size"] == [96, 64]
    assert {"style:conv1_1", "style:conv2_1"} <= set(record["final_losses"])
    assert "style:conv3_1" not in record["final_losses"]


def test_layers_lists_vgg19(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run_cli(capsys, "layers")
    assert code == 0
    assert stderr == ""
    rows = [line.split() for line in stdout.splitlines()[1:]]
    names = [row[0] for row in rows if len(row) > 1 and row[1] in ("conv", "pool")]
    assert len(names) == 21  # 16 conv + 5 pool
    assert names[0] == "conv1_1" and names[-1] == "pool5"
    assert "conv4_2" in names


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run_cli(capsys, "transfer", "--help")
    assert code == 0
    assert "--ratio" in stdout and "--style-layers" in stdout


# --- settings from flags, as recorded ------------------------------------------------------------------------------

@pytest.mark.slow
def test_ratio_relu_names_and_equal_style_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.png"
    code, _, stderr = run_cli(capsys, "transfer", CONTENT, STYLE, *FAST, "-q", "-o", str(out), "--alpha", "2",
                              "--ratio", "1e-4", "--content-layers", "relu4_2",
                              "--style-layers", "conv1_1,relu2_1,conv3_1")
    assert code == 0, stderr
    settings = read_record(out)["settings"]
    assert settings["alpha"] == 2.0
    assert settings["beta"] == pytest.approx(2.0 / 1e-4)  # beta = alpha / ratio
    assert settings["content_layers"] == [["conv4_2", 1.0]]  # relu4_2 is conv4_2
    assert [layer for layer, _ in settings["style_layers"]] == ["conv1_1", "conv2_1", "conv3_1"]
    weights = [w for _, w in settings["style_layers"]]
    assert weights == pytest.approx([1 / 3] * 3)
    assert sum(weights) == pytest.approx(1.0)


@pytest.mark.slow
def test_weighted_layers_are_parsed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.png"
    code, _, stderr = run_cli(capsys, "transfer", CONTENT, STYLE, *FAST, "-q", "-o", str(out),
                              "--content-layers", "conv4_2:1,conv5_2:0.5", "--style-layers", "conv1_1:0.25,conv2_1:2")
    assert code == 0, stderr
    record = read_record(out)
    assert record["settings"]["content_layers"] == [["conv4_2", 1.0], ["conv5_2", 0.5]]
    assert record["settings"]["style_layers"] == [["conv1_1", 0.25], ["conv2_1", 2.0]]
    assert {"content:conv4_2", "content:conv5_2", "style:conv1_1", "style:conv2_1"} <= set(record["final_losses"])


@pytest.mark.slow
def test_seed_makes_noise_init_reproducible(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pixels = {}
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        out = tmp_path / f"{name}.png"
        # on the CPU: GPU kernels need not be bit-reproducible, the seed's promise is about the noise
        code, _, stderr = run_cli(capsys, "transfer", CONTENT, STYLE, *FAST, "-q", "--init", "noise",
                                  "--seed", seed, "--device", "cpu", "-o", str(out))
        assert code == 0, stderr
        assert read_record(out)["seed"] == int(seed)
        pixels[name] = assert_rgb8(out, (64, 48))
    assert np.array_equal(pixels["a"], pixels["b"])
    assert not np.array_equal(pixels["a"], pixels["c"])


@pytest.mark.slow
def test_time_limit_stops_early_and_still_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.png"
    code, _, stderr = run_cli(capsys, "transfer", CONTENT, STYLE, "--size", "64", "--steps", "1000000",
                              "--time-limit", "1.5", "-q", "-o", str(out))
    assert code == 0, stderr
    assert_rgb8(out, (64, 48))
    record = read_record(out)
    assert record["stop_reason"] == "time limit"
    assert 1 <= record["steps"] < 1000000
    assert record["settings"]["time_limit"] == 1.5
    assert 1.0 <= record["elapsed_seconds"] < 30


# --- bad input: exit 2, one line naming the culprit, nothing written ------------------------------------------------

@pytest.fixture
def bad_inputs(tmp_path: Path) -> Path:
    """tmp/in holds broken inputs; tmp/out is where outputs go."""
    folder = tmp_path / "in"
    folder.mkdir()
    (tmp_path / "out").mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a JPEG\n", encoding="utf-8")
    (folder / "folder.jpg").mkdir()
    jpeg = cli.DEMO_CONTENT.read_bytes()
    (folder / "half.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    with Image.open(cli.DEMO_STYLE) as image:
        image.save(folder / "full.png")
    png = (folder / "full.png").read_bytes()
    (folder / "half.png").write_bytes(png[: len(png) // 2])
    return folder


_NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: --device cuda is not an error here")
T = ["transfer", CONTENT, STYLE]

# (argv with {in} = the broken inputs' folder and {out} = the output path, what the message names, output name)
BAD: list[Any] = [
    pytest.param(["transfer", "{in}/missing.jpg", STYLE], ["missing.jpg"], "out.png", id="missing-content"),
    pytest.param(["transfer", CONTENT, "{in}/missing.jpg"], ["missing.jpg"], "out.png", id="missing-style"),
    pytest.param(["content", "{in}/missing.jpg"], ["missing.jpg"], "out.png", id="content-missing"),
    pytest.param(["texture", "{in}/missing.jpg"], ["missing.jpg"], "out.png", id="texture-missing"),
    pytest.param(["transfer", "{in}/folder.jpg", STYLE], ["folder.jpg"], "out.png", id="folder-as-input"),
    pytest.param(["transfer", "{in}/empty.jpg", STYLE], ["empty.jpg"], "out.png", id="zero-bytes"),
    pytest.param(["transfer", CONTENT, "{in}/text.jpg"], ["text.jpg"], "out.png", id="not-an-image"),
    pytest.param(["transfer", "{in}/half.jpg", STYLE], ["half.jpg"], "out.png", id="truncated-jpeg"),
    pytest.param(["transfer", CONTENT, "{in}/half.png"], ["half.png"], "out.png", id="truncated-png"),
    pytest.param(["texture", "{in}/half.png"], ["half.png"], "out.png", id="texture-truncated-png"),
    pytest.param([*T, "--init", "{in}/missing.png"], ["missing.png"], "out.png", id="init-image-missing"),
    pytest.param([*T, "--steps", "0"], ["--steps"], "out.png", id="steps-0"),
    pytest.param([*T, "--steps", "abc"], ["--steps", "abc"], "out.png", id="steps-abc"),
    pytest.param([*T, "--size", "-5"], ["--size"], "out.png", id="size-negative"),
    pytest.param([*T, "--alpha", "-1"], ["--alpha"], "out.png", id="alpha-negative"),
    pytest.param([*T, "--beta", "nan"], ["--beta"], "out.png", id="beta-nan"),
    pytest.param([*T, "--lr", "0"], ["--lr"], "out.png", id="lr-0"),
    pytest.param([*T, "--time-limit", "-1"], ["--time-limit"], "out.png", id="time-limit-negative"),
    pytest.param([*T, "--style-layers", "conv1_1,conv9_1"], ["--style-layers", "conv9_1"], "out.png",
                 id="unknown-style-layer"),
    pytest.param([*T, "--content-layers", "relu9_9"], ["--content-layers", "relu9_9"], "out.png",
                 id="unknown-content-layer"),
    pytest.param(["content", CONTENT, "--layer", "conv6_1"], ["--layer", "conv6_1"], "out.png",
                 id="content-unknown-layer"),
    pytest.param(["texture", STYLE, "--layers", "conv1_1,bogus"], ["--layers", "bogus"], "out.png",
                 id="texture-unknown-layer"),
    pytest.param(["texture", STYLE, "--layers", "conv1_1:0.5"], ["--layers"], "out.png",
                 id="texture-layers-with-weights"),
    pytest.param([*T, "--style-layers", "conv1_1:x"], ["--style-layers", "x"], "out.png", id="bad-layer-weight"),
    pytest.param([*T, "--pooling", "foo"], ["--pooling", "foo"], "out.png", id="pooling-foo"),
    pytest.param([*T, "--device", "foo"], ["--device", "foo"], "out.png", id="device-foo"),
    pytest.param([*T, "--device", "cuda"], ["--device", "cuda"], "out.png", id="device-cuda-absent",
                 marks=_NO_CUDA),
    pytest.param([*T, "--style-blend", "0.5,0.5"], ["--style-blend"], "out.png", id="style-blend-count"),
    pytest.param([*T, STYLE, "--style-blend", "1"], ["--style-blend"], "out.png", id="style-blend-count-2"),
    pytest.param(["texture", STYLE, "--output-size", "12"], ["--output-size", "12"], "out.png",
                 id="output-size-12"),
    pytest.param(["texture", STYLE, "--output-size", "12x12"], ["--output-size"], "out.png",
                 id="output-size-too-small"),
    pytest.param([*T, "--weights", "{in}/missing.pth", "--preprocessing", "caffe"], ["missing.pth"], "out.png",
                 id="weights-file-missing"),
    pytest.param([*T, "--weights", "{in}/missing.pth"], ["missing.pth"], "out.png",
                 id="weights-file-missing-no-preprocessing"),
    pytest.param([*T, "--ratio", "1e-3", "--beta", "5"], ["--ratio", "--beta"], "out.png", id="ratio-and-beta"),
    pytest.param([*T, "--ratio", "0"], ["--ratio"], "out.png", id="ratio-0"),
    pytest.param([*T, "--save-every", "0"], ["--save-every"], "out.png", id="save-every-0"),
    pytest.param([*T, "--seed", str(2**70)], ["--seed"], "out.png", id="seed-overflow"),
    pytest.param([*T, "--size", "99999999"], ["--size"], "out.png", id="size-out-of-memory"),
    pytest.param([*T], ["missing/out.png"], "missing/out.png", id="output-folder-missing"),
    pytest.param([*T], ["a-folder.png"], "a-folder.png", id="output-is-a-folder"),
    pytest.param([*T], ["out.gif", ".gif"], "out.gif", id="unsupported-extension"),
    pytest.param([*T, "--log", "{out_dir}/missing/log.csv"], ["missing/log.csv"], "out.png", id="log-folder-missing"),
    pytest.param([*T, "--log", "{out_dir}"], ["--log"], "out.png", id="log-is-a-folder"),
    pytest.param([*T], ["out.png.json"], "out.png", id="record-path-is-a-folder"),
    pytest.param(["transfer", CONTENT], ["style"], "out.png", id="transfer-without-style"),
    pytest.param(["transfer", CONTENT, STYLE, "--no-such-flag"], ["--no-such-flag"], "out.png", id="unknown-flag"),
]


@pytest.mark.parametrize(("argv", "names", "output"), BAD)
def test_bad_input_is_refused_and_nothing_is_written(argv: list[str], names: list[str], output: str,
                                                     bad_inputs: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out_dir = tmp_path / "out"
    out = out_dir / output
    if output == "a-folder.png":
        out.mkdir()
    if "out.png.json" in names:
        Path(str(out) + ".json").mkdir()
    monkeypatch.chdir(out_dir)  # anything written relative to the current folder would show up too
    case = [a.format(**{"in": bad_inputs, "out_dir": out_dir}) for a in argv]
    # the common flags go first, so that the case's own flags (--steps 0) win
    full = [case[0], "--size", "64", "--steps", "5", "-q", "-o", str(out), *case[1:]]

    before = snapshot(tmp_path)
    code, stdout, stderr = run_cli(capsys, *full)
    assert_one_line_error(code, stderr, names)
    assert stdout == ""
    assert snapshot(tmp_path) == before  # no image, no OUT.json, no log, no temp files

    # an existing output survives, byte for byte
    if out.parent.is_dir() and not out.exists():
        out.write_bytes(b"an earlier result, to be kept")
        before = snapshot(tmp_path)
        code, _, stderr = run_cli(capsys, *full)
        assert_one_line_error(code, stderr, names)
        assert snapshot(tmp_path) == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="running as root: folder permissions are not enforced, a read-only folder is writable")
def test_read_only_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "out.png").write_bytes(b"an earlier result")
    folder.chmod(0o555)
    try:
        before = snapshot(tmp_path)
        code, _, stderr = run_cli(capsys, "transfer", CONTENT, STYLE, *FAST, "-q", "-o", str(folder / "out.png"))
        assert_one_line_error(code, stderr, [str(folder)])
        assert snapshot(tmp_path) == before
    finally:
        folder.chmod(0o755)


def test_empty_output_name(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_cli(capsys, "transfer", CONTENT, STYLE, *FAST, "-q", "-o", "")
    assert_one_line_error(code, stderr, ["-o"])
    assert list(tmp_path.iterdir()) == []


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = run_cli(capsys)
    assert_one_line_error(code, stderr, [])


# --- the real thing: python -m ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_subprocess_success_quiet_and_not(tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    done = run_subprocess("transfer", CONTENT, STYLE, *FAST, "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"wrote {out}" in done.stderr
    assert_rgb8(out, (64, 48))
    assert read_record(out)["weights"]["sha256"] == CAFFE_WEIGHTS_SHA256

    quiet = tmp_path / "quiet.jpg"
    done = run_subprocess("demo", *FAST, "--quiet", "-o", str(quiet), cwd=tmp_path, module="gramstyle")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # --quiet: no progress bar, no summary
    assert done.stdout == ""
    assert_rgb8(quiet, (64, 48))

    done = run_subprocess("layers", cwd=tmp_path, module="gramstyle")
    assert done.returncode == 0
    assert "conv5_4" in done.stdout


@pytest.mark.parametrize(("argv", "names"), [
    pytest.param(["transfer", "missing.jpg", STYLE], ["missing.jpg"], id="missing-file"),
    pytest.param(["transfer", CONTENT, STYLE, "--steps", "abc"], ["--steps"], id="steps-abc"),
    pytest.param(["texture", STYLE, "--layers", "conv1_1,bogus"], ["bogus"], id="texture-unknown-layer"),
])
def test_subprocess_bad_input(argv: list[str], names: list[str], tmp_path: Path) -> None:
    (tmp_path / "out.png").write_bytes(b"kept")
    before = snapshot(tmp_path)
    done = run_subprocess(*argv, "--size", "64", "--steps", "5", "-o", "out.png", cwd=tmp_path)
    assert_one_line_error(done.returncode, done.stderr, names)
    assert done.stdout == ""
    assert snapshot(tmp_path) == before
