"""The paper's Figures 1-3, regenerated: every panel a job of `gramstyle.apps.batch`, every figure a labelled grid.

The panels of the chosen figures are one batch into ``FOLDER/panels/`` (``<panel>-<job id>.png``, its run record
and the batch's ``manifest.jsonl``), so a rerun runs only what is not done, a failed panel fails alone, and the
panels run in worker processes or on Ray as any batch does. ``results.json`` collects the final losses of every
panel; ``fig1.png``, ``fig2.png``, ``fig3.png`` are the grids, each rewritten only when one of its panels changed.

Substitutions, stated in the grids' captions and the gallery: Kandinsky's Composition VII is not available, so
Fig. 3 uses The Starry Night; Picasso's Femme nue assise is under copyright, so Fig. 2 E is made only from a file
the user gives (``picasso``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import files
from .. import images as imageio
from ..assets import SHIPWRECK, STARRY_NIGHT, THE_SCREAM, TUBINGEN
from ..config import PAPER_CONTENT_LAYERS, Settings, equal_weights
from ..errors import SettingsError
from .batch import Executor, Job, Summary, batch
from .batch.jobs import load_inputs, with_ids
from .batch.runner import Cell, OnJob, paths, write_grid

FIGURES = ("fig1", "fig2", "fig3")
LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
FIG3_RATIOS = (1e-5, 1e-4, 1e-3, 1e-2)  # the columns of Fig. 3
PANELS = "panels"  # the batch's folder under FOLDER
RESULTS = "results.json"


@dataclass(frozen=True)
class Panel:
    """A cell of a figure: the batch job that makes its image, and where it goes."""

    figure: str
    id: str  # the panel's name: its file stem before the job id, its key in results.json
    label: str  # caption in the grid
    job: Job
    row: int = 0
    column: int = 0

    @property
    def task(self) -> str:  # "transfer", "content" or "texture"
        return self.job.task

    @property
    def settings(self) -> Settings:
        return self.job.settings


def _panel(figure: str, id: str, task: str, label: str, settings: Settings, content: str | None = None,
           style: str | None = None, row: int = 0, column: int = 0) -> Panel:
    return Panel(figure, id, label, Job(content, () if style is None else (style,), settings, name=id, task=task),
                 row, column)


def paper_settings(size: int, steps: int, **overrides: Any) -> Settings:
    """The figures' base settings: the paper's normalised network and its white-noise start."""
    # fp32: the reproduction evaluates the paper's network as the authors did, not a faster approximation.
    base = Settings(weights="caffe-normalized", init="noise", size=size, steps=steps, precision="fp32")
    return base.replace(**overrides)


def panels(size: int = 512, steps: int = 500, picasso: str | None = None, ratio_scale: float = 1.0,
           **overrides: Any) -> list[Panel]:
    """Every panel of Figures 1-3 with its settings; ``ratio_scale`` multiplies every alpha/beta of the paper."""
    s = paper_settings(size, steps, **overrides)
    out: list[Panel] = []
    for i, layer in enumerate(LAYERS):  # Fig. 1, top: content reconstructions a-e
        out.append(_panel("fig1", f"fig1_content_{layer}", "content", f"content {layer}",
                          s.replace(content_layers=((layer, 1.0),), style_layers=(), beta=0.0),
                          content=str(TUBINGEN), row=0, column=i))
    for i in range(len(LAYERS)):  # Fig. 1, bottom: style reconstructions from nested layer subsets
        subset = LAYERS[: i + 1]
        out.append(_panel("fig1", f"fig1_style_{i + 1}", "texture", f"style {{{subset[0]}..{subset[-1]}}}"
                          if i else f"style {{{subset[0]}}}",
                          s.replace(style_layers=equal_weights(subset), content_layers=(),
                                    alpha=0.0, beta=1.0),
                          style=str(STARRY_NIGHT), row=1, column=i))
    fig2 = [("B", "Turner", str(SHIPWRECK), 1e-3), ("C", "Van Gogh", str(STARRY_NIGHT), 1e-3),
            ("D", "Munch", str(THE_SCREAM), 1e-3)]
    if picasso is not None:
        fig2.append(("E", "Picasso", picasso, 1e-4))
    for i, (letter, painter, path, ratio) in enumerate(fig2):  # Fig. 2 B-E: alpha/beta as in the paper
        out.append(_panel("fig2", f"fig2_{letter}_{painter.lower().replace(' ', '_')}", "transfer",
                          f"{letter}: {painter}  a/b={ratio * ratio_scale:g}",
                          s.replace(content_layers=PAPER_CONTENT_LAYERS, alpha=1.0, beta=1.0 / (ratio * ratio_scale)),
                          content=str(TUBINGEN), style=path, row=0, column=i))
    for r in range(len(LAYERS)):  # Fig. 3: rows of nested style layers x columns of alpha/beta
        subset = LAYERS[: r + 1]
        for c, ratio in enumerate(FIG3_RATIOS):
            out.append(_panel("fig3", f"fig3_{subset[-1]}_{ratio:.0e}", "transfer",
                              f"..{subset[-1]}  a/b={ratio * ratio_scale:.0e}",
                              s.replace(style_layers=equal_weights(subset),
                                        content_layers=PAPER_CONTENT_LAYERS, alpha=1.0,
                                        beta=1.0 / (ratio * ratio_scale)),
                              content=str(TUBINGEN), style=str(STARRY_NIGHT), row=r, column=c))
    return out


TITLES = {
    "fig1": "Fig. 1: content reconstructions (top) from conv1_1..conv5_1; style reconstructions (bottom) from "
            "nested layer subsets (The Starry Night)",
    "fig2": "Fig. 2: the Tuebingen photo in the styles of Turner, Van Gogh, Munch (a/b = 1e-3) and Picasso "
            "(1e-4, only if given); Kandinsky (F) is not available",
    "fig3": "Fig. 3: rows = style layers conv1_1..X, columns = alpha/beta; The Starry Night replaces "
            "Kandinsky's Composition VII",
}


def identified(size: int = 512, steps: int = 500, picasso: str | None = None, ratio_scale: float = 1.0,
               **overrides: Any) -> list[Panel]:
    """`panels` with their jobs' ids, validated. Panels of the same inputs and settings (Fig. 2 C is Fig. 3's
    last row at 1e-3) share the first one's job, so that one run and one file serve both, whichever figures are
    made."""
    every = panels(size, steps, picasso, ratio_scale, **overrides)
    for p in every:
        p.settings.validated()
    jobs = with_ids([p.job for p in every], load_inputs([p.job for p in every]))
    first: dict[str, Job] = {}
    for job in jobs:
        first.setdefault(job.id, job)
    return [replace(p, job=first[job.id]) for p, job in zip(every, jobs, strict=True)]


@dataclass
class Made:
    """What `make_figures` did: the batch's summary, the results (as in results.json) and the grids it wrote."""

    summary: Summary
    results: dict[str, Any]
    grids: list[Path]


def make_figures(folder: str, *, size: int = 512, steps: int = 500, only: Sequence[str] = FIGURES,
                 picasso: str | None = None, ratio_scale: float = 1.0, executor: Executor | None = None,
                 on_job: OnJob | None = None, on_start: Callable[[int, int], None] | None = None,
                 **overrides: Any) -> Made:
    """Run the panels of the chosen figures not yet done as one batch (`executor`: default, this process), then
    write the grids whose panels changed and results.json; `on_job`, `on_start` are the batch's callbacks."""
    only = list(dict.fromkeys(only))
    unknown = set(only) - set(FIGURES)
    if unknown:
        raise SettingsError(f"--only takes {', '.join(FIGURES)}; got {', '.join(sorted(unknown))}")
    if picasso is not None:
        imageio.open_image(picasso)  # a bad path fails now, not after an hour of other panels
    if not (ratio_scale > 0 and ratio_scale != float("inf")):
        raise SettingsError(f"--ratio-scale must be a finite number > 0, got {ratio_scale}")
    chosen = [p for p in identified(size, steps, picasso, ratio_scale, **overrides) if p.figure in only]
    out = Path(folder)  # created only once every setting has passed
    summary = batch([p.job for p in chosen], out / PANELS, executor=executor, on_job=on_job, on_start=on_start,
                    sheet=False)
    previous = _read_results(out / RESULTS)
    results = {**previous, "panels": {**previous["panels"], **{p.id: _entry(out, p, summary) for p in chosen}}}
    # A panel run now is a new file even where its record reads as before (a rerun of a deterministic run whose
    # time rounds to the same millisecond): its grid and results.json are made again
    ran = set(summary.done) | set(summary.failed)
    grids = []
    for figure in only:
        cells = [p for p in chosen if p.figure == figure]
        grid = out / f"{figure}.png"
        if (grid.is_file() and not any(p.job.id in ran for p in cells)
                and all(previous["panels"].get(p.id) == results["panels"][p.id] for p in cells)):
            continue  # made from these very panels before
        if write_grid(out / PANELS, [Cell(p.job, p.row, p.column, p.label) for p in cells], TITLES[figure], grid):
            grids.append(grid)
    if results != previous or ran:
        files.write_text(json.dumps(results, indent=2) + "\n", out / RESULTS)
    return Made(summary, results, grids)


def _read_results(path: Path) -> dict[str, Any]:
    """results.json keeps the panels of earlier runs (other figures); those just made replace theirs."""
    results: dict[str, Any] = {}
    if path.is_file():
        with contextlib.suppress(ValueError):
            results = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(results, dict) or not isinstance(results.get("panels"), dict):
        results = {"panels": {}}
    return results


def _entry(out: Path, panel: Panel, summary: Summary) -> dict[str, Any]:
    entry: dict[str, Any] = {"figure": panel.figure, "label": panel.label, "task": panel.task}
    if panel.job.id in summary.failed:
        return {**entry, "error": summary.failed[panel.job.id]}
    image, record = paths(out / PANELS, panel.job)
    r = json.loads(record.read_text(encoding="utf-8"))
    return {**entry, "final_losses": r["final_losses"], "steps": r["steps"], "elapsed_seconds": r["elapsed_seconds"],
            "device": r["device"], "settings": r["settings"], "output": f"{PANELS}/{image.name}"}
