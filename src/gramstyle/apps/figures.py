"""The paper's Figures 1-3, regenerated: every panel a recorded run, every figure a labelled grid.

Panels are independent runs written to ``FOLDER/panels/<id>.png`` with their run record; a panel whose image
and record exist is not run again, so an interrupted run resumes where it stopped. ``results.json`` collects the
final losses of every panel, and ``fig1.png``, ``fig2.png``, ``fig3.png`` are the grids.

Substitutions, stated in the grids' captions and the gallery: Kandinsky's Composition VII is not available, so
Fig. 3 uses The Starry Night; Picasso's Femme nue assise is under copyright, so Fig. 2 E is made only from a file
the user gives (``picasso``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .. import files
from .. import images as imageio
from ..assets import SHIPWRECK, STARRY_NIGHT, THE_SCREAM, TUBINGEN
from ..config import PAPER_CONTENT_LAYERS, Settings, equal_weights
from ..errors import SettingsError
from ..tasks import reconstruct_content, synthesize_texture, transfer
from .grid import compose

FIGURES = ("fig1", "fig2", "fig3")
LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
FIG3_RATIOS = (1e-5, 1e-4, 1e-3, 1e-2)  # the columns of Fig. 3


@dataclass(frozen=True)
class Panel:
    figure: str
    id: str  # file stem under panels/
    task: str  # "transfer", "content" or "texture"
    label: str  # caption in the grid
    settings: Settings
    content: str | None = None
    style: str | None = None
    row: int = 0
    column: int = 0


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
        out.append(Panel("fig1", f"fig1_content_{layer}", "content", f"content {layer}",
                         s.replace(content_layers=((layer, 1.0),), style_layers=(), beta=0.0),
                         content=str(TUBINGEN), row=0, column=i))
    for i in range(len(LAYERS)):  # Fig. 1, bottom: style reconstructions from nested layer subsets
        subset = LAYERS[: i + 1]
        out.append(Panel("fig1", f"fig1_style_{i + 1}", "texture", f"style {{{subset[0]}..{subset[-1]}}}"
                         if i else f"style {{{subset[0]}}}",
                         s.replace(style_layers=equal_weights(subset), content_layers=(),
                                   alpha=0.0, beta=1.0),
                         style=str(STARRY_NIGHT), row=1, column=i))
    fig2 = [("B", "Turner", str(SHIPWRECK), 1e-3), ("C", "Van Gogh", str(STARRY_NIGHT), 1e-3),
            ("D", "Munch", str(THE_SCREAM), 1e-3)]
    if picasso is not None:
        fig2.append(("E", "Picasso", picasso, 1e-4))
    for i, (letter, painter, path, ratio) in enumerate(fig2):  # Fig. 2 B-E: alpha/beta as in the paper
        out.append(Panel("fig2", f"fig2_{letter}_{painter.lower().replace(' ', '_')}", "transfer",
                         f"{letter}: {painter}  a/b={ratio * ratio_scale:g}",
                         s.replace(content_layers=PAPER_CONTENT_LAYERS, alpha=1.0, beta=1.0 / (ratio * ratio_scale)),
                         content=str(TUBINGEN), style=path, row=0, column=i))
    for r in range(len(LAYERS)):  # Fig. 3: rows of nested style layers x columns of alpha/beta
        subset = LAYERS[: r + 1]
        for c, ratio in enumerate(FIG3_RATIOS):
            out.append(Panel("fig3", f"fig3_{subset[-1]}_{ratio:.0e}", "transfer",
                             f"..{subset[-1]}  a/b={ratio * ratio_scale:.0e}",
                             s.replace(style_layers=equal_weights(subset),
                                       content_layers=PAPER_CONTENT_LAYERS, alpha=1.0,
                                       beta=1.0 / (ratio * ratio_scale)),
                             content=str(TUBINGEN), style=str(STARRY_NIGHT), row=r, column=c))
    return out


def _panel_files(folder: Path, panel: Panel) -> tuple[Path, Path]:
    image = folder / "panels" / f"{panel.id}.png"
    return image, Path(str(image) + ".json")


def run_panel(panel: Panel, folder: str, threads: int | None = None) -> dict[str, Any]:
    """Run one panel unless its image and record exist; return its record."""
    image, record = _panel_files(Path(folder), panel)
    if image.is_file() and record.is_file():
        with open(record, encoding="utf-8") as f:
            done: dict[str, Any] = json.load(f)
        if done.get("settings") == panel.settings.to_dict():
            return done
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if panel.task == "content":
        layer = panel.settings.content_layers[0][0]
        result = reconstruct_content(panel.content or "", layer=layer, settings=panel.settings)
    elif panel.task == "texture":
        result = synthesize_texture(panel.style or "", layers=[n for n, _ in panel.settings.style_layers],
                                    settings=panel.settings)
    else:
        result = transfer(panel.content or "", panel.style or "", settings=panel.settings)
    result.save(str(image), extra={"panel": panel.id, "figure": panel.figure, "label": panel.label})
    with open(record, encoding="utf-8") as f:
        saved: dict[str, Any] = json.load(f)
    return saved


TITLES = {
    "fig1": "Fig. 1: content reconstructions (top) from conv1_1..conv5_1; style reconstructions (bottom) from "
            "nested layer subsets (The Starry Night)",
    "fig2": "Fig. 2: the Tuebingen photo in the styles of Turner, Van Gogh, Munch (a/b = 1e-3) and Picasso "
            "(1e-4, only if given); Kandinsky (F) is not available",
    "fig3": "Fig. 3: rows = style layers conv1_1..X, columns = alpha/beta; The Starry Night replaces "
            "Kandinsky's Composition VII",
}


def make_figures(folder: str, *, size: int = 512, steps: int = 500, only: Sequence[str] = FIGURES,
                 jobs: int = 1, picasso: str | None = None, ratio_scale: float = 1.0,
                 on_panel: Callable[[Panel, dict[str, Any]], None] | None = None,
                 **overrides: Any) -> dict[str, Any]:
    """Run (or resume) every panel of the chosen figures, then write the grids and results.json."""
    unknown = set(only) - set(FIGURES)
    if unknown:
        raise SettingsError(f"--only takes {', '.join(FIGURES)}; got {', '.join(sorted(unknown))}")
    if jobs < 1:
        raise SettingsError(f"--jobs must be a positive integer, got {jobs}")
    if picasso is not None:
        imageio.open_image(picasso)  # a bad path fails now, not after an hour of other panels
    if not (ratio_scale > 0 and ratio_scale != float("inf")):
        raise SettingsError(f"--ratio-scale must be a finite number > 0, got {ratio_scale}")
    chosen = [p for p in panels(size, steps, picasso, ratio_scale, **overrides) if p.figure in only]
    for p in chosen:
        p.settings.validated()
    out = Path(folder)  # created only once every setting has passed
    (out / "panels").mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, Any]] = {}
    if jobs == 1:
        for p in chosen:
            records[p.id] = run_panel(p, folder)
            if on_panel is not None:
                on_panel(p, records[p.id])
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        import multiprocessing

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {p.id: (p, pool.submit(run_panel, p, folder, threads)) for p in chosen}
            for pid, (p, future) in futures.items():
                records[pid] = future.result()
                if on_panel is not None:
                    on_panel(p, records[pid])
    for figure in only:
        cells = {}
        for p in chosen:
            if p.figure == figure:
                with Image.open(_panel_files(out, p)[0]) as im:
                    cells[(p.row, p.column)] = (im.convert("RGB"), p.label)
        if cells:
            cell_width = max(192, min(size, 384))  # small panels are enlarged so that captions fit
            imageio.save_image(compose(cells, TITLES[figure], cell_width), out / f"{figure}.png")
    results = _merge_results(out / "results.json", chosen, records)
    files.write_text(json.dumps(results, indent=2) + "\n", out / "results.json")
    return results


def _merge_results(path: Path, chosen: Sequence[Panel], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """results.json keeps the panels of earlier runs (other figures) and updates those just made."""
    results: dict[str, Any] = {"panels": {}}
    if path.is_file():
        with contextlib.suppress(ValueError):
            results = json.loads(path.read_text(encoding="utf-8"))
    for p in chosen:
        r = records[p.id]
        results["panels"][p.id] = {
            "figure": p.figure, "label": p.label, "task": p.task, "final_losses": r["final_losses"],
            "steps": r["steps"], "elapsed_seconds": r["elapsed_seconds"], "device": r["device"],
            "settings": r["settings"],
        }
    return results
