"""`gramstyle video --jobs N`: the shots of a clip (split at its hard cuts) run as batch jobs give the frames of the
sequential run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gramstyle import assets
from gramstyle.apps.batch import LocalExecutor
from gramstyle.apps.cli import main
from test_cli import _one_torch_thread  # noqa: F401  (the autouse fixture: in-process runs on one thread)
from test_video import _folder_with_a_cut


@pytest.mark.slow
def test_shots_as_jobs_give_the_sequential_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cv2")
    frames = tmp_path / "frames"
    names = _folder_with_a_cut(frames, "f{}.png")  # a hard cut at frame 3
    common = [str(frames), str(assets.STARRY_NIGHT), "--size", "64", "--first-frame-steps", "4", "--frame-steps",
              "2", "--device", "cpu", "-q"]
    assert main(["video", *common, "-o", str(tmp_path / "seq")]) == 0
    # one torch thread per worker, as in this process, so that the arithmetic is the same
    monkeypatch.setattr(LocalExecutor, "threads_per_job", lambda self: 1)
    assert main(["video", *common, "-o", str(tmp_path / "jobs"), "--jobs", "2"]) == 0
    for name in names:
        seq = np.asarray(Image.open(tmp_path / "seq" / name))
        jobs = np.asarray(Image.open(tmp_path / "jobs" / name))
        assert np.array_equal(seq, jobs), name
        a = json.loads((tmp_path / "seq" / f"{name}.json").read_text())
        b = json.loads((tmp_path / "jobs" / f"{name}.json").read_text())
        assert a["video"] == b["video"] and a["final_losses"] == b["final_losses"]
        assert a["inputs"] == b["inputs"]
    seq_clip = json.loads((tmp_path / "seq" / "clip.json").read_text())
    jobs_clip = json.loads((tmp_path / "jobs" / "clip.json").read_text())
    assert seq_clip["shots"] == jobs_clip["shots"] == [1, 3]
    assert seq_clip["temporal_error"] == jobs_clip["temporal_error"]
    # a rerun finds both shots written and redoes neither
    before = (tmp_path / "jobs" / "f3.png").stat().st_mtime_ns
    assert main(["video", *common, "-o", str(tmp_path / "jobs"), "--jobs", "2"]) == 0
    assert (tmp_path / "jobs" / "f3.png").stat().st_mtime_ns == before
