"""`gramstyle batch` on the local executor: real weights, 64 px, 2 steps per job.

The 2x2 batch, a rerun that does nothing, a deleted output redone alone, a corrupt input that fails only its own
jobs, and a driver killed with SIGKILL whose batch completes on rerun with every job once in the manifest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gramstyle.apps import cli
from gramstyle.apps.batch import MANIFEST, SHEET, LocalExecutor, batch, expand, parse_axis
from gramstyle.apps.batch.runner import Manifest
from gramstyle.assets import SHIPWRECK, STARRY_NIGHT, THE_SCREAM, TUBINGEN
from gramstyle.config import Settings
from gramstyle.errors import SettingsError
from test_cli import _one_torch_thread  # noqa: F401  (the autouse fixture: in-process runs on one thread)

FAST = ["--size", "64", "--steps", "2"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def manifest(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def images(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


# --- expansion (no weights) -----------------------------------------------------------------------------------

def test_axes_expand_to_the_product_with_stable_distinct_ids(tmp_path: Path) -> None:
    base = Settings(size=64, steps=2)
    axes = [parse_axis("ratio=1e-4,1e-3"), parse_axis("style_layers=conv1_1;conv1_1,conv2_1"),
            parse_axis("steps=2,3")]
    jobs = expand([str(TUBINGEN), str(SHIPWRECK)], [str(STARRY_NIGHT)], base, axes)
    assert len(jobs) == 2 * 1 * 2 * 2 * 2
    assert {j.settings.beta for j in jobs} == {1e4, 1e3}
    assert {j.settings.style_layers for j in jobs} == {(("conv1_1", 1.0),), (("conv1_1", 0.5), ("conv2_1", 0.5))}
    from gramstyle.apps.batch.runner import prepare

    first, _ = prepare(jobs)
    again, _ = prepare(jobs)
    assert [j.id for j in first] == [j.id for j in again]
    assert len({j.id for j in first}) == len(jobs)
    assert first[0].stem.startswith("tubingen-starry_night-ratio1e-4-style_layersconv1_1-steps2-")
    paired = expand([str(TUBINGEN), str(SHIPWRECK)], [str(STARRY_NIGHT), str(THE_SCREAM)], base, pair=True)
    assert [(Path(j.content).stem, Path(j.styles[0]).stem) for j in paired] == [("tubingen", "starry_night"),
                                                                                ("shipwreck", "the_scream")]
    with pytest.raises(SettingsError, match="steps"):
        parse_axis("steps=2,two")
    with pytest.raises(SettingsError, match="unknown setting"):
        parse_axis("stepz=2")


# --- running --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_batch_2x2_rerun_does_nothing_and_a_deleted_output_is_redone(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["batch", str(TUBINGEN), str(SHIPWRECK), "--style", str(STARRY_NIGHT), str(THE_SCREAM), "-o", str(out),
            *FAST]
    code, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "4 done, 0 failed, 0 skipped" in err
    made = images(out)
    assert len(made) == 4
    lines = manifest(out)
    assert [line["status"] for line in lines] == ["done"] * 4
    for image in made:
        record = json.loads(Path(str(image) + ".json").read_text())
        assert image.stem.endswith(record["batch_id"][:12])
        assert record["settings"]["size"] == 64 and record["steps"] == 2
        assert record["inputs"]["content"] in (str(TUBINGEN), str(SHIPWRECK))
    assert (out / SHEET).is_file()
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}

    code, err = run_cli(capsys, *argv)  # the same command again: nothing to do, and it says so
    assert code == 0
    assert "all 4 jobs already done" in err
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps

    made[1].unlink()
    code, err = run_cli(capsys, *argv)
    assert code == 0
    assert "3 jobs already done, 1 to run" in err and "1 done, 0 failed, 3 skipped" in err
    assert images(out) == made
    lines = manifest(out)
    assert len(lines) == 5 and lines[-1]["output"] == made[1].name

    # A driver killed after a job's files but before its manifest line, in the middle of writing it: the rerun
    # runs nothing, ignores the torn line and adds the missing one.
    last = lines[-1]["id"]
    text = (out / MANIFEST).read_text().splitlines(keepends=True)
    (out / MANIFEST).write_text("".join(t for t in text if last not in t) + text[-1][:20])
    code, err = run_cli(capsys, *argv)
    assert code == 0 and "all 4 jobs already done" in err
    done = [line for line in Manifest(out / MANIFEST).lines() if line["status"] == "done"]
    assert len(done) == 4 and done[-1]["id"] == last and len({line["id"] for line in done}) == 4


@pytest.mark.slow
def test_a_corrupt_input_fails_only_its_own_jobs(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    jobs = expand([str(TUBINGEN), str(bad)], [str(STARRY_NIGHT)], Settings(size=64, steps=2),
                  [parse_axis("ratio=1e-3,1e-2")])
    summary = batch(jobs, tmp_path / "out", executor=LocalExecutor(jobs=1, threads=1))
    assert len(summary.done) == 2 and len(summary.failed) == 2
    lines = manifest(tmp_path / "out")
    failed = [line for line in lines if line["status"] == "failed"]
    assert len(failed) == 2 and all(line["content"] == str(bad) for line in failed)
    assert all(f"{bad}: " in line["error"] and line["error_type"] == "ImageError" for line in failed)
    assert len(images(tmp_path / "out")) == 2
    # a failed job is tried again on rerun (and fails again); the done ones are not
    again = batch(jobs, tmp_path / "out", executor=LocalExecutor(jobs=1, threads=1))
    assert again.skipped == 2 and len(again.failed) == 2


@pytest.mark.slow
def test_a_killed_driver_s_batch_completes_on_rerun_with_every_job_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "gramstyle", "batch", str(TUBINGEN), str(SHIPWRECK), "--style", str(STARRY_NIGHT),
            str(THE_SCREAM), "-o", str(out), *FAST, "-q"]
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([*argv, "--jobs", "2"], env=env, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        if (out / MANIFEST).is_file() and (out / MANIFEST).read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the batch finished before it could be interrupted"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its workers, as a crash would
    driver.wait()
    before = manifest(out)
    assert 1 <= len(before) < 4

    assert cli.main([*argv[3:], "--jobs", "1"]) == 0  # the rerun, in this process (one start-up less)
    lines = manifest(out)
    assert lines[: len(before)] == before
    counts = Counter(line["id"] for line in lines if line["status"] == "done")
    assert len(counts) == 4 and set(counts.values()) == {1}
    made = images(out)
    assert len(made) == 4 and all(Path(str(p) + ".json").is_file() for p in made)
    assert {p.name for p in made} == {line["output"] for line in lines}
