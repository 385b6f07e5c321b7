"""`gramstyle figures` as a batch: its panels are batch jobs of three tasks, run by `gramstyle.apps.batch`.

Real weights at 64 px and 2 steps: the panels are the images the task functions make and the grid is `compose`'s
of them (the files the figures made before they went through the batch), a rerun does nothing and says so, a
deleted panel is redone alone, and the content and texture jobs run on Ray as locally.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gramstyle import reconstruct_content, synthesize_texture
from gramstyle.apps import cli
from gramstyle.apps.batch import MANIFEST, LocalExecutor
from gramstyle.apps.batch.jobs import load_inputs, with_ids
from gramstyle.apps.figures import PANELS, RESULTS, TITLES, identified, make_figures, panels
from gramstyle.apps.grid import compose
from test_cli import _one_torch_thread  # noqa: F401  (the autouse fixture: in-process runs on one thread)

FAST = ["--size", "64", "--steps", "2"]
#: What results.json has said of every panel since before the batch, and the panel's image now.
ENTRY = {"figure", "label", "task", "final_losses", "steps", "elapsed_seconds", "device", "settings", "output"}


def pixels(image: Image.Image | Path) -> np.ndarray:
    if isinstance(image, Path):
        with Image.open(image) as im:
            return np.asarray(im.convert("RGB"))
    return np.asarray(image.convert("RGB"))


def stamps(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def manifest(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / PANELS / MANIFEST).read_text().splitlines()]


def test_panels_are_batch_jobs_of_three_tasks_with_stable_ids() -> None:
    chosen = identified(size=64, steps=2)
    assert [p.job.id for p in chosen] == [p.job.id for p in identified(size=64, steps=2)]
    by_panel = {p.id: p.job for p in chosen}
    content, texture = by_panel["fig1_content_conv3_1"], by_panel["fig1_style_3"]
    assert content.task == "content" and content.styles == () and content.inputs == (content.content,)
    assert texture.task == "texture" and texture.content is None and len(texture.styles) == 1
    assert content.stem.startswith("fig1_content_conv3_1-") and texture.stem.startswith("fig1_style_3-")
    # Fig. 2 C is Fig. 3's last row at 1e-3: the same inputs and settings, one job (one run, one file) for both
    assert by_panel["fig2_C_van_gogh"] == by_panel["fig3_conv5_1_1e-03"]
    assert len({p.job.stem for p in chosen}) == len(chosen) - 1
    # the ids are the batch's own: the same as `with_ids` gives the jobs as `panels` defines them
    plain = [p.job for p in panels(size=64, steps=2)]
    assert [p.job.id for p in chosen] == [j.id for j in with_ids(plain, load_inputs(plain))]
    # another size is another job, so a rerun at it does not take these images
    assert not {j.id for j in by_panel.values()} & {p.job.id for p in identified(size=96, steps=2)}


def test_figures_take_the_batch_s_execution_flags() -> None:
    from gramstyle.apps.batch import RayExecutor
    from gramstyle.apps.batch.cli import executor_from_args

    parser = cli.build_parser()
    args = parser.parse_args(["figures", "-o", "f", "--ray", "ray://head:10001", "--gpus-per-job", "0.25",
                              "--cpus-per-job", "2", "--verbose"])
    executor = executor_from_args(args)
    assert isinstance(executor, RayExecutor) and executor.address == "ray://head:10001"
    assert (executor.cpus_per_job, executor.gpus_per_job, args.verbose, args.quiet) == (2, 0.25, True, False)
    local = executor_from_args(parser.parse_args(["figures", "-o", "f", "--jobs", "3", "-q"]))
    assert isinstance(local, LocalExecutor) and local.jobs == 3


@pytest.mark.slow
def test_fig1_through_the_batch_makes_the_task_functions_images_and_compose_s_grid(tmp_path: Path) -> None:
    out = tmp_path / "figs"
    made = make_figures(str(out), size=64, steps=2, only=["fig1"], executor=LocalExecutor(jobs=1, threads=1))
    assert made.summary.ok and len(made.summary.done) == 10 and made.grids == [out / "fig1.png"]
    assert sorted(p.name for p in out.iterdir()) == ["fig1.png", PANELS, RESULTS]
    results = json.loads((out / RESULTS).read_text())["panels"]
    chosen = {p.id: p for p in panels(size=64, steps=2) if p.figure == "fig1"}
    assert set(results) == set(chosen) and all(set(r) == ENTRY for r in results.values())
    assert all(r["steps"] == 2 and r["final_losses"]["total"] > 0 for r in results.values())
    assert [line["status"] for line in manifest(out)] == ["done"] * 10
    # the panels are the images the task functions make with the panels' settings (as figures ran them before)
    for pid, direct in [("fig1_content_conv3_1", lambda s: reconstruct_content(
                             chosen["fig1_content_conv3_1"].job.content, layer="conv3_1", settings=s)),
                        ("fig1_style_3", lambda s: synthesize_texture(
                             chosen["fig1_style_3"].job.styles[0], layers=["conv1_1", "conv2_1", "conv3_1"],
                             settings=s))]:
        assert results[pid]["task"] == chosen[pid].task
        assert np.array_equal(pixels(out / results[pid]["output"]), pixels(direct(chosen[pid].settings).image))
    # and the grid is compose's of them, as before: 2 rows x 5 columns, 192 px cells for the captions
    cells = {}
    for pid, p in chosen.items():
        with Image.open(out / results[pid]["output"]) as im:
            cells[(p.row, p.column)] = (im.convert("RGB"), p.label)
    assert np.array_equal(pixels(out / "fig1.png"), pixels(compose(cells, TITLES["fig1"], 192)))


@pytest.mark.slow
def test_a_rerun_does_nothing_and_says_so_and_a_deleted_panel_is_redone_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI's one worker takes every core; one thread, as the other in-process runs (test_cli's fixture)
    monkeypatch.setattr(LocalExecutor, "threads_per_job", lambda self: 1)
    out = tmp_path / "figs"
    argv = ["figures", "--only", "fig2", *FAST, "-o", str(out)]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "3 done, 0 failed, 0 skipped" in err and str(out / "fig2.png") in err
    before = stamps(out)
    assert len(list((out / PANELS).glob("fig2_*.png"))) == 3

    assert cli.main(argv) == 0  # the same command again: nothing to do, and it says so
    assert "all 3 runs already done" in capsys.readouterr().err
    assert stamps(out) == before

    results = json.loads((out / RESULTS).read_text())["panels"]
    munch = out / results["fig2_D_munch"]["output"]
    munch.unlink()
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "2 runs already done, 1 to run" in err and "1 done, 0 failed, 2 skipped" in err
    after = stamps(out)
    assert munch.is_file() and set(after) == set(before)
    changed = {p for p in after if after[p] != before.get(p)}
    assert changed == {munch, Path(str(munch) + ".json"), out / "fig2.png", out / RESULTS,
                       out / PANELS / MANIFEST}
    lines = manifest(out)
    assert len(lines) == 4 and lines[-1]["output"] == munch.name and lines[-1]["task"] == "transfer"
    assert json.loads((out / RESULTS).read_text())["panels"]["fig2_B_turner"] == results["fig2_B_turner"]
