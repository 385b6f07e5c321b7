"""``gramstyle video``: a clip stylized frame by frame with Ruder, Dosovitskiy & Brox's temporal loss (2016).

    gramstyle video clip.mp4 starry.jpg -o out.mp4 --size 256
    gramstyle video frames/ starry.jpg -o styled/ --temporal-frames 1,2,4 --passes 2

The first frame of each shot is stylized as ``transfer`` does; every later frame starts from the previous stylized
frame warped by the optical flow (disoccluded pixels too, as Ruder's ``prevWarped``) and adds the temporal term
(`gramstyle.temporal.TemporalTerm`) against the warped previous outputs, weighted by their reliability. A frame
whose flow check fails over most of the picture is a hard cut: the chain restarts there. One `Session` serves the
whole clip. Resumable frame by frame: a frame whose output and run record exist is read back, not redone.

A video file needs the ``[video]`` extra (PyAV, OpenCV headless); a folder of frames needs nothing more, unless
the flow is estimated (OpenCV) rather than read from a folder of ``.flo`` files.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .. import files, stages
from .. import images as imageio
from ..config import Settings
from ..errors import GramstyleError, SettingsError, literal
from ..events import Callback
from ..result import Result
from ..result import record as run_record
from ..session import Session
from ..start import initial_image
from ..temporal import (
    OCCLUSION_ABSOLUTE,
    TemporalTerm,
    closest_first,
    disocclusions,
    read_flo,
    reliability,
    warp,
    warping_error,
)
from .batch import Executor, Outcome, Work

#: The temporal weight G (of the size-free term, against gramstyle's alpha = 1, beta = 1e3): measured in
#: docs/video.md (of 1e12, 3e12, 1e13 and 3e13, the largest that keeps the style loss within 20% of independent
#: frames on 8-frame clips at 128 px, a zoom included); the paper's 1e3 belongs to its own normalisation.
DEFAULT_TEMPORAL_WEIGHT = 1e12
#: A frame is a hard cut when fewer than this share of its pixels pass the forward-backward check.
CUT_FRACTION = 0.5
#: How the previous output is resampled onto the frame (start and temporal target): bicubic, because bilinear
#: resampling at sub-pixel offsets blurs, and chained frame after frame the blur builds up and raises the style loss
#: (docs/video.md). The warping error is measured with bilinear warping, as Lai et al. do.
PICTURE_WARP = "bicubic"
#: Where a later frame's unreliable pixels start: "warped", the warped previous output there too, as Ruder et al.'s
#: ``-init prevWarped`` does (manuel-ruder/artistic-videos, artistic_video.lua: ``img = warpImage(...)``), or
#: "start", the frame's usual start there (the first version). "warped" keeps the painted texture where the flow
#: is unreliable, and the optimization paints the content there from it: a lower style loss and warping error on
#: the moving-object clip (docs/video.md).
DISOCCLUDED_START = "warped"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".gif")


class VideoError(GramstyleError):
    """A clip that cannot be read or written."""


# --- flow ----------------------------------------------------------------------------------------------------------

class FlowSource(Protocol):
    def __call__(self, a: int, b: int) -> Tensor:
        """The flow from frame a to frame b (on frame a's pixels), (H, W, 2)."""
        ...


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise VideoError("estimating optical flow needs OpenCV: pip install 'gramstyle[video]' (or give a "
                         "folder of .flo files to --flow)") from None
    return cv2


class EstimatedFlow:
    """Flow between frames by OpenCV's DIS (Kroeger et al. 2016) or Farneback, on the frames as stylized (the
    working size), computed on demand and kept.

    DIS is tuned for the small working sizes of style transfer (docs/video.md, "The flow", measured on the
    benchmark's clips at 128 px): refined down to full resolution, 4-pixel patches at stride 1 (a moving object's
    patches straddle its edge less), 25 variational refinement iterations with smoothness alpha 40 (fewer false
    motion boundaries inside a zoom) and no patch mean normalization. Each direction is then averaged with the
    reverse flow followed back, where the two agree (`symmetric`)."""

    def __init__(self, frames: Sequence[Image.Image], method: str = "dis") -> None:
        cv2 = _cv2()
        self.gray = [cv2.cvtColor(np.asarray(f.convert("RGB")), cv2.COLOR_RGB2GRAY) for f in frames]
        self.method = method
        self.cache: dict[tuple[int, int], Tensor] = {}
        self.raw: dict[tuple[int, int], Tensor] = {}
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "dis" else None
        if self._dis is not None:
            self._dis.setFinestScale(0)
            self._dis.setPatchSize(4)
            self._dis.setPatchStride(1)
            self._dis.setVariationalRefinementIterations(25)
            self._dis.setVariationalRefinementAlpha(40.0)
            self._dis.setUseMeanNormalization(False)

    def _raw(self, a: int, b: int) -> Tensor:
        if (a, b) not in self.raw:
            cv2 = _cv2()
            if self._dis is not None:
                flow = self._dis.calc(self.gray[a], self.gray[b], None)
            else:
                flow = cv2.calcOpticalFlowFarneback(self.gray[a], self.gray[b], None, 0.5, 3, 15, 3, 5, 1.2, 0)
            self.raw[(a, b)] = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32))
        return self.raw[(a, b)]

    def __call__(self, a: int, b: int) -> Tensor:
        if (a, b) not in self.cache:
            flow = self._raw(a, b)
            self.cache[(a, b)] = symmetric(flow, self._raw(b, a)) if self._dis is not None else flow
        return self.cache[(a, b)]


def symmetric(flow: Tensor, reverse: Tensor) -> Tensor:
    """The flow a -> b averaged with the reverse flow b -> a followed back onto a's pixels and negated, where the
    two agree within Ruder's absolute forward-backward tolerance (`temporal.OCCLUSION_ABSOLUTE`, 0.5 px^2); elsewhere
    (occlusions) ``flow`` unchanged. Two estimates with independent errors: their mean has about half the squared
    error."""
    back = -warp(reverse, flow)
    agree = ((back - flow).square().sum(-1, keepdim=True) < OCCLUSION_ABSOLUTE)
    return torch.where(agree, 0.5 * (flow + back), flow)


class FlowFolder:
    """``.flo`` files in Ruder et al.'s naming, frames counted from 1: forward_A_B.flo (A < B) and backward_A_B.flo
    (A > B) hold the flow from frame A to frame B at the working size."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SettingsError(f"--flow {literal(folder)}: not dis, farneback or a folder")

    def __call__(self, a: int, b: int) -> Tensor:
        kind = "forward" if a < b else "backward"
        path = self.folder / f"{kind}_{a + 1}_{b + 1}.flo"
        if not path.exists():
            raise VideoError(f"{literal(path)}: missing (the flow from frame {a + 1} to frame {b + 1})")
        return read_flo(path)


# --- the clip ------------------------------------------------------------------------------------------------------

@dataclass
class FramePlan:
    """How the clip is stylized (the video flags)."""

    temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT
    temporal_frames: tuple[int, ...] = (1,)  # previous frames (distance) that enter the temporal term
    first_frame_steps: int | None = None  # default: the settings' steps
    frame_steps: int | None = None  # default: half the settings' steps
    passes: int = 1
    warm_start: bool = True  # later frames start from the warped previous output


@dataclass
class FrameRecord:
    index: int
    shot: int
    steps: int
    seconds: float
    losses: dict[str, float]
    reliable: float | None = None  # share of pixels with c = 1 against the previous frame
    resumed: bool = False


@dataclass
class ClipResult:
    outputs: list[Tensor]  # (1, 3, H, W) in [0, 1], the 8-bit outputs
    records: list[FrameRecord]
    shots: list[int]  # first frame of each shot
    temporal_error: list[float | None] = field(default_factory=list)  # per frame against the previous one

    def summary(self) -> dict[str, Any]:
        errors = [e for e in self.temporal_error if e is not None]
        later = [r.seconds for r in self.records[1:] if not r.resumed]
        return {"frames": len(self.outputs), "shots": [s + 1 for s in self.shots],
                "temporal_error_mean": float(np.mean(errors)) if errors else None,
                "temporal_error": self.temporal_error,
                "content_mean": float(np.mean([r.losses.get("content", 0.0) for r in self.records])),
                "style_mean": float(np.mean([r.losses.get("style", 0.0) for r in self.records])),
                "seconds_per_later_frame": float(np.mean(later)) if later else None,
                "frames_detail": [vars(r) for r in self.records]}


def _steps(plan: FramePlan, settings: Settings) -> tuple[int, int]:
    first = plan.first_frame_steps if plan.first_frame_steps is not None else settings.steps
    later = plan.frame_steps if plan.frame_steps is not None else max(1, settings.steps // 2)
    return first, later


def usual_start(settings: Settings, frame: Image.Image, styles: Sequence[Any]) -> Tensor:
    """The frame's start image as `transfer` would make it, at the working size."""
    last = stages.plan(settings, frame, list(styles))[-1]
    return initial_image(settings.init, last.shape, settings.seed, last.content, last.styles, settings.max_pixels,
                         settings.color_match)


#: Where a frame's finished run goes (instead of ``outputs``): its index in the clip, its Result, its record's
#: ``video`` entry.
FrameSink = Callable[[int, Result, dict[str, Any]], None]


def read_back(output: str, size: tuple[int, int], index: int) -> tuple[Tensor, FrameRecord]:
    """A frame written by an earlier run: its image at the working size and its record (resumed)."""
    record = json.loads(Path(output + ".json").read_text(encoding="utf-8"))
    image = Image.open(output).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    info = record.get("video", {})
    return imageio.to_tensor(image), FrameRecord(index, int(info.get("shot", 1)) - 1, int(record.get("steps", 0)),
                                                 float(record.get("elapsed_seconds", 0.0)),
                                                 record.get("final_losses", {}), info.get("reliable"), resumed=True)


def stylize_clip(session: Session, frames: Sequence[Image.Image], styles: Sequence[Any], settings: Settings,
                 flow: FlowSource, plan: FramePlan, *, outputs: Sequence[str] | None = None,
                 record_extra: dict[str, Any] | None = None, on_frame: Callable[[FrameRecord], None] | None = None,
                 callback: Callback | None = None, first_frame: int = 0, clip_frames: int | None = None,
                 sink: FrameSink | None = None) -> ClipResult:
    """Stylize ``frames`` (PIL images at the working size) in order; with ``outputs`` (one path per frame) each
    frame is saved with its run record as soon as it is done (the last pass's, with several passes), and a frame
    whose output and record exist is read back instead (resuming). ``sink`` takes the finished frames instead of
    ``outputs``. ``first_frame`` and ``clip_frames`` place ``frames`` in a longer clip (a shot run as its own job):
    the records count frames and shots from there."""
    first_steps, later_steps = _steps(plan, settings)
    n = len(frames)
    contents = [imageio.to_tensor(f) for f in frames]
    results: list[Tensor | None] = [None] * n
    records: list[FrameRecord | None] = [None] * n
    shot_of = [0] * n
    shots: list[int] = []
    passes = max(1, plan.passes)
    use_temporal = plan.temporal_weight > 0 and bool(plan.temporal_frames)

    def done(i: int) -> bool:
        return outputs is not None and passes == 1 and Path(outputs[i]).exists() and \
            Path(outputs[i] + ".json").exists()

    for p in range(passes):
        order = list(range(n)) if p % 2 == 0 else list(range(n - 1, -1, -1))
        step = 1 if p % 2 == 0 else -1
        for pos, i in enumerate(order):
            if p == 0 and done(i):
                assert outputs is not None
                results[i], records[i] = read_back(outputs[i], frames[i].size, i)
                shot_of[i] = records[i].shot  # type: ignore[union-attr]
                if not shots or shots[-1] != shot_of[i]:
                    shots.append(shot_of[i])
                if on_frame is not None:
                    on_frame(records[i])  # type: ignore[arg-type]
                continue
            # neighbours already done in this pass, nearest first, within the shot
            neighbours: list[int] = []
            if pos > 0:
                for j in sorted(plan.temporal_frames if use_temporal else (1,)):
                    k = i - step * j
                    if 0 <= k < n and (shot_of[k] == shot_of[i] if p > 0 else True) and results[k] is not None:
                        neighbours.append(k)
                if p == 0 and neighbours and neighbours[0] != i - 1:
                    neighbours = []
            warped, weights, fb = [], [], None
            for k in neighbours:
                back, fwd = flow(i, k), flow(k, i)
                previous = results[k]
                assert previous is not None
                warped.append(warp(previous, back, PICTURE_WARP).clamp(0, 1))
                weights.append(reliability(back, fwd))
                if fb is None:
                    fb = float(disocclusions(back, fwd).mean())
            if p == 0:
                if fb is not None and fb < CUT_FRACTION:  # a hard cut: a new shot
                    warped, weights, neighbours = [], [], []
                if not neighbours:
                    shots.append(i)
                    shot_of[i] = i
                else:
                    shot_of[i] = shot_of[neighbours[0]]
                # long-term frames only within the shot
                keep = [m for m, k in enumerate(neighbours) if shot_of[k] == shot_of[i]]
                warped, weights, neighbours = [warped[m] for m in keep], [weights[m] for m in keep], \
                    [neighbours[m] for m in keep]
            init: Tensor | None = None
            current = results[i]
            if neighbours and (plan.warm_start or p > 0):
                c = weights[0][None, None]
                if p == 0 and DISOCCLUDED_START == "warped":
                    init = warped[0]
                elif p == 0:
                    init = c * warped[0] + (1 - c) * usual_start(settings, frames[i], styles)
                else:  # later passes: blend the frame's last result with its warped neighbour (Ruder et al.)
                    assert current is not None
                    init = 0.5 * c * warped[0] + (1 - 0.5 * c) * current
            elif p > 0:
                init = current
            chosen = settings.replace(steps=first_steps if p == 0 and not neighbours else later_steps)
            extra = None
            if neighbours and use_temporal:
                long = closest_first(weights) if len(weights) > 1 else weights
                term = TemporalTerm(tuple(warped), tuple(long), tuple(str(abs(i - k)) for k in neighbours))
                weight = plan.temporal_weight

                def extra(stage: stages.Stage, net: Any, device: torch.device,
                          term: TemporalTerm = term, weight: float = weight) -> list[tuple[Any, float]]:
                    return [(term.resized(stage.shape).to(device), weight)]

            started = time.perf_counter()
            result: Result = session.run("transfer", chosen, content=frames[i], styles=list(styles), init=init,
                                         extra_terms=extra, callback=callback)
            seconds = time.perf_counter() - started
            out = imageio.to_tensor(result.image)
            if tuple(out.shape[2:]) != tuple(contents[i].shape[2:]):
                out = torch.nn.functional.interpolate(out, size=contents[i].shape[2:], mode="bilinear")
            results[i] = out
            reliable = float(weights[0].mean()) if weights else None
            records[i] = FrameRecord(first_frame + i, first_frame + shot_of[i], result.steps, seconds, result.losses,
                                     reliable)
            if (outputs is not None or sink is not None) and p == passes - 1:
                info = {"frame": first_frame + i + 1, "frames": clip_frames or n, "shot": first_frame + shot_of[i] + 1,
                        "pass": p + 1, "passes": passes, "previous_frames": [first_frame + k + 1 for k in neighbours],
                        "reliable": reliable, "temporal_weight": plan.temporal_weight if extra is not None else 0.0}
                if sink is not None:
                    sink(i, result, info)
                else:
                    assert outputs is not None
                    result.save(outputs[i], extra={"video": info, **(record_extra or {})})
            if on_frame is not None and p == passes - 1:
                on_frame(records[i])  # type: ignore[arg-type]

    final = [r for r in results if r is not None]
    return ClipResult(final, [r for r in records if r is not None], sorted(set(shots)),
                      temporal_errors(final, sorted(set(shots)), flow))


def temporal_errors(outputs: Sequence[Tensor], shots: Sequence[int], flow: FlowSource) -> list[float | None]:
    """Per frame, the warping error against the previous output (None for the first frame of each shot)."""
    errors: list[float | None] = [None]
    for i in range(1, len(outputs)):
        if i in shots:
            errors.append(None)
            continue
        back, fwd = flow(i, i - 1), flow(i - 1, i)
        errors.append(warping_error(outputs[i], warp(outputs[i - 1], back), reliability(back, fwd)))
    return errors


def find_shots(flow: FlowSource, count: int) -> list[int]:
    """The first frame of each shot: frame 0 and every frame whose forward-backward check against the previous
    frame passes on fewer than CUT_FRACTION of its pixels (the test `stylize_clip` applies as it goes)."""
    return [0] + [i for i in range(1, count) if float(disocclusions(flow(i, i - 1), flow(i - 1, i)).mean())
                  < CUT_FRACTION]


# --- shots as batch jobs --------------------------------------------------------------------------------------------

#: The batch executors' task name for one shot (`gramstyle.apps.batch.runner.execute` imports and calls it).
SHOT_TASK = "gramstyle.apps.video:run_shot"


def flow_source(spec: str, frames: Sequence[Image.Image], first_frame: int = 0) -> FlowSource:
    """``--flow``'s value as a flow source over ``frames``, which start at ``first_frame`` of the clip (a folder
    of .flo files names the clip's frames)."""
    if spec in ("dis", "farneback"):
        return EstimatedFlow(frames, spec)
    folder = FlowFolder(spec)
    return folder if first_frame == 0 else (lambda a, b: folder(a + first_frame, b + first_frame))


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def shot_work(frames: Sequence[Image.Image], first: int, names: Sequence[str], styles: Sequence[str],
              settings: Settings, plan: FramePlan, flow: str, clip_frames: int,
              record_extra: dict[str, Any] | None = None) -> Work:
    """One shot (frames ``first`` .. ``first + len(frames) - 1`` of the clip) as a batch `Work`: its frames at the
    working size as PNGs in a zip, the style files' bytes, the settings and the video plan."""
    return Work(id=f"shot-{first + 1}", task=SHOT_TASK,
                settings={"settings": settings.to_dict(), "plan": asdict(plan), "flow": flow, "first": first,
                          "clip_frames": clip_frames, "names": list(names), "record_extra": record_extra or {}},
                content=(f"shot-{first + 1}.zip", _zip({f"{i:06d}.png": _png(f) for i, f in enumerate(frames)})),
                styles=tuple((style, Path(style).read_bytes()) for style in styles),
                output=names[0])


def run_shot(session: Session, work: Work) -> Outcome:
    """A batch worker's side of `shot_work`: stylize the shot with `stylize_clip` and return each frame's image
    (in its output's format) and run record in a zip (``Outcome.png``) and its `FrameRecord`s
    (``Outcome.record["frames"]``). A `GramstyleError` is the job's failure, returned."""
    started = time.perf_counter()
    spec = work.settings
    try:
        settings = Settings.from_dict(spec["settings"])
        plan = FramePlan(**{**spec["plan"], "temporal_frames": tuple(spec["plan"]["temporal_frames"])})
        if work.content is None or work.content[1] is None:
            raise VideoError(f"{literal(work.id)}: no frames")
        with zipfile.ZipFile(io.BytesIO(work.content[1])) as archive:
            frames = [Image.open(io.BytesIO(archive.read(name))).convert("RGB") for name in sorted(archive.namelist())]
        styles = []
        for name, data in work.styles:
            if data is None:
                raise VideoError(f"{literal(name)}: cannot be read")
            styles.append(imageio.open_image(Image.open(io.BytesIO(data)), settings.max_pixels))
        first, names = int(spec["first"]), list(spec["names"])
        members: dict[str, bytes] = {}

        def sink(i: int, result: Result, info: dict[str, Any]) -> None:
            with tempfile.TemporaryDirectory() as folder:  # the encoder `Result.save` uses, options included
                encoded = Path(folder) / names[i]
                imageio.encode_image(result.image, encoded, names[i])
                members[names[i]] = encoded.read_bytes()
            rec = run_record(result, names[i], {"video": info, **spec["record_extra"]})
            rec["inputs"] = {**rec.get("inputs", {}), "style": [name for name, _ in work.styles]}
            members[names[i] + ".json"] = json.dumps(rec).encode()

        clip = stylize_clip(session, frames, styles, settings, flow_source(spec["flow"], frames, first), plan,
                            first_frame=first, clip_frames=int(spec["clip_frames"]), sink=sink)
    except GramstyleError as exc:
        return Outcome(work.id, error=str(exc), error_type=type(exc).__name__, field=exc.field, pid=os.getpid(),
                       elapsed=time.perf_counter() - started)
    return Outcome(work.id, png=_zip(members), record={"frames": [vars(r) for r in clip.records]}, pid=os.getpid(),
                   elapsed=time.perf_counter() - started)


def _write_frame(path: str, image: bytes, record: dict[str, Any]) -> None:
    """A frame's image and record, written together atomically (as `Result.save` does)."""
    with files.atomic_paths([path, path + ".json"]) as (image_tmp, record_tmp):
        image_tmp.write_bytes(image)
        record_tmp.write_text(json.dumps({**record, "output": path, "image_sha256": files.sha256_of(image_tmp)},
                                         indent=2) + "\n", encoding="utf-8")


def stylize_shots(frames: Sequence[Image.Image], styles: Sequence[str], settings: Settings, flow: str,
                  plan: FramePlan, executor: Executor, outputs: Sequence[str], *,
                  record_extra: dict[str, Any] | None = None,
                  on_frame: Callable[[FrameRecord], None] | None = None) -> ClipResult:
    """`stylize_clip` with the clip split at its hard cuts (`find_shots`, the same test) and each shot run as a job
    by a batch executor (`LocalExecutor` processes or `RayExecutor` actors): shots are independent, so the frames
    are those of the sequential run. The driver writes every frame; a shot whose frames are all written is read
    back, not redone (one pass only, as `stylize_clip` resumes)."""
    n = len(frames)
    driver_flow = flow_source(flow, frames)
    firsts = find_shots(driver_flow, n)
    bounds = list(zip(firsts, [*firsts[1:], n], strict=True))
    results: list[Tensor | None] = [None] * n
    records: list[FrameRecord | None] = [None] * n
    works: list[Work] = []
    names = [Path(o).name for o in outputs]
    folder_of = {Path(o).name: o for o in outputs}
    for first, end in bounds:
        done = plan.passes == 1 and all(Path(outputs[i]).exists() and Path(outputs[i] + ".json").exists()
                                        for i in range(first, end))
        if done:
            for i in range(first, end):
                results[i], records[i] = read_back(outputs[i], frames[i].size, i)
                if on_frame is not None:
                    on_frame(records[i])  # type: ignore[arg-type]
            continue
        works.append(shot_work(frames[first:end], first, names[first:end], styles, settings, plan, flow, n,
                               record_extra))
    failures: list[str] = []

    def finished(outcome: Outcome) -> None:
        if outcome.error is not None or outcome.png is None or outcome.record is None:
            failures.append(f"{outcome.id}: {outcome.error}")
            return
        with zipfile.ZipFile(io.BytesIO(outcome.png)) as archive:
            for item in outcome.record["frames"]:
                record = FrameRecord(**item)
                name = names[record.index]
                image = archive.read(name)
                _write_frame(folder_of[name], image, json.loads(archive.read(name + ".json")))
                results[record.index] = imageio.to_tensor(Image.open(io.BytesIO(image)).convert("RGB"))
                records[record.index] = record
                if on_frame is not None:
                    on_frame(record)

    if works:
        executor.run(works, finished)
    if failures:
        raise VideoError("; ".join(literal(f) for f in failures))
    final = [r for r in results if r is not None]
    return ClipResult(final, [r for r in records if r is not None], firsts, temporal_errors(final, firsts, driver_flow))


# --- reading and writing clips ---------------------------------------------------------------------------------

def _av() -> Any:
    try:
        import av
    except ImportError:
        raise VideoError("reading and writing video files needs PyAV: pip install 'gramstyle[video]' (or use a "
                         "folder of frames)") from None
    return av


@dataclass
class Clip:
    frames: list[Image.Image]  # as read, full size
    names: list[str]  # output names for a folder
    fps: Fraction | None = None
    source: Path | None = None  # the video file (its audio is copied)


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def read_clip(path: str | Path) -> Clip:
    path = Path(path)
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir() if p.suffix.lower() in imageio.FORMATS)
        if not names:
            raise VideoError(f"{literal(path)}: no frames (.png, .jpg, .webp, .tif) in the folder")
        return Clip([imageio.open_image(path / name) for name in names], names)
    if not path.exists():
        raise VideoError(f"{literal(path)}: no such file or folder")
    av = _av()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = stream.average_rate or stream.guessed_rate or Fraction(25)
            frames = [frame.to_image() for frame in container.decode(stream)]
    except (av.error.FFmpegError, IndexError) as exc:
        raise VideoError(f"{literal(path)}: cannot read as a video ({literal(exc)})") from None
    if not frames:
        raise VideoError(f"{literal(path)}: no frames")
    return Clip(frames, [f"frame_{i + 1:05d}.png" for i in range(len(frames))], Fraction(fps), path)


def write_video(path: str | Path, frames: Sequence[Image.Image], fps: Fraction, size: tuple[int, int],
                audio_from: Path | None) -> None:
    """Encode the frames (resized to ``size``) as H.264 (MPEG-4 part 2 where no H.264 encoder is built in) at
    ``fps``, copying the source's audio stream, atomically."""
    av = _av()
    width, height = size[0] - size[0] % 2, size[1] - size[1] % 2  # yuv420p needs even sides
    with files.atomic_path(path) as tmp, av.open(str(tmp), "w", format=_container_format(path)) as out:
        stream = None
        for codec in ("libx264", "h264", "mpeg4"):
            try:
                stream = out.add_stream(codec, rate=fps)
                break
            except (av.error.FFmpegError, ValueError):
                continue
        if stream is None:
            raise VideoError("no video encoder in this PyAV build (tried libx264, h264, mpeg4)")
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        source = av.open(str(audio_from)) if audio_from is not None else None
        audio_in = source.streams.audio[0] if source is not None and source.streams.audio else None
        audio_out = None
        if audio_in is not None:
            try:
                audio_out = out.add_stream_from_template(audio_in)
            except (av.error.FFmpegError, ValueError) as exc:  # a codec the output container cannot hold
                warnings.warn(f"{path}: audio not copied ({exc})", stacklevel=2)
        for image in frames:
            frame = av.VideoFrame.from_image(image.convert("RGB").resize((width, height),
                                                                         Image.Resampling.LANCZOS))
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if source is not None and audio_in is not None and audio_out is not None:
            for packet in source.demux(audio_in):
                if packet.dts is None:
                    continue
                packet.stream = audio_out
                out.mux(packet)
        if source is not None:
            source.close()


def _container_format(path: str | Path) -> str | None:
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi",
            ".webm": "webm", ".gif": "gif"}.get(Path(path).suffix.lower())


# --- the command ---------------------------------------------------------------------------------------------------

def _frames_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected distances such as 1,2,4, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive distances such as 1,2,4, got {text!r}")
    return tuple(sorted(set(values)))


def add_parser(sub: Any) -> None:
    from .batch.cli import add_execution_flags
    from .cli import _add_settings, _number

    p = sub.add_parser("video", help="stylize a clip (video file or folder of frames) without flicker (Ruder et al.)")
    p.add_argument("input", help="a video file (needs the [video] extra) or a folder of frames")
    p.add_argument("style", nargs="+", help="style image(s)")
    p.add_argument("--ratio", type=_number(float, "a number"), metavar="ALPHA/BETA",
                   help="content-to-style ratio alpha/beta (sets beta = alpha / ratio)")
    group = p.add_argument_group("video")
    group.add_argument("--temporal-weight", type=_number(float, "a number"), default=DEFAULT_TEMPORAL_WEIGHT,
                       metavar="G", help="weight of the temporal loss; 0 turns it off (docs/video.md) "
                       f"[default: {DEFAULT_TEMPORAL_WEIGHT:g}]")
    group.add_argument("--temporal-frames", type=_frames_list, default=(1,), metavar="1,2,4",
                       help="previous frames (by distance) in the temporal loss; more than one is the long-term "
                            "loss [default: 1]")
    group.add_argument("--first-frame-steps", type=_number(int, "an integer"), metavar="N",
                       help="steps for the first frame of each shot [default: --steps]")
    group.add_argument("--frame-steps", type=_number(int, "an integer"), metavar="N",
                       help="steps for every later frame [default: half of --steps]")
    group.add_argument("--flow", default="dis", metavar="dis|farneback|DIR",
                       help="optical flow: OpenCV's DIS, Farneback, or a folder of .flo files (forward_1_2.flo, "
                            "backward_2_1.flo, ... at the working size) [default: dis]")
    group.add_argument("--passes", type=_number(int, "an integer"), default=1, metavar="N",
                       help="passes over the clip, alternating direction (Ruder et al.'s multi-pass) [default: 1]")
    _add_settings(p, "transfer")
    # --jobs, --ray, --cpus-per-job, --gpus-per-job, -q, --verbose: the shots (split at hard cuts) as batch jobs
    add_execution_flags(p, _number, unit="shot")
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", required=True,
                     help="a video file, or a folder for the stylized frames (same names); the clip record goes to "
                          "OUTPUT.json (video) or OUTPUT/clip.json (folder)")


def run(args: argparse.Namespace, argv: Sequence[str]) -> None:
    from .cli import settings_from_args

    settings = settings_from_args(args, "transfer")
    for name in ("first_frame_steps", "frame_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SettingsError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.passes < 1:
        raise SettingsError(f"--passes must be a positive integer, got {args.passes}")
    if not (args.temporal_weight >= 0 and args.temporal_weight != float("inf")):
        raise SettingsError(f"--temporal-weight must be a finite number >= 0, got {args.temporal_weight}")
    plan = FramePlan(args.temporal_weight, args.temporal_frames, args.first_frame_steps, args.frame_steps,
                     args.passes)
    for style in args.style:
        imageio.open_image(style, settings.max_pixels)  # a bad style image fails before any frame is read
    to_video = is_video(args.output)
    if to_video and not Path(args.output).parent.is_dir():
        raise SettingsError(f"{literal(args.output)}: folder {literal(Path(args.output).parent)} does not exist")
    if not to_video and Path(args.output).exists() and not Path(args.output).is_dir():
        raise SettingsError(f"{literal(args.output)}: exists and is not a folder (a video needs an extension such "
                            f"as .mp4)")
    clip = read_clip(args.input)
    frames = [imageio.resize_longest(imageio.to_rgb(f), settings.size, f"frame {i + 1}", settings.max_pixels)
              for i, f in enumerate(clip.frames)]
    if len({f.size for f in frames}) > 1:
        raise VideoError(f"{literal(args.input)}: the frames differ in size")
    executor: Executor | None = None
    if args.jobs != 1 or args.ray is not None:
        from .batch.cli import executor_from_args

        executor = executor_from_args(args)
    flow = flow_source(args.flow, frames)

    if to_video:
        folder = Path(args.output + ".frames")
        record_path = Path(args.output + ".json")
        names = clip.names
    else:
        folder = Path(args.output)
        record_path = folder / "clip.json"
        names = clip.names if clip.source is None else [f"frame_{i + 1:05d}.png" for i in range(len(frames))]
    folder.mkdir(parents=True, exist_ok=True)
    outputs = [str(folder / name) for name in names]

    bar: Any = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(frames), unit="frame", file=sys.stderr, dynamic_ncols=True)

    def on_frame(record: FrameRecord) -> None:
        if bar is not None and args.verbose:
            bar.write(f"frame {record.index + 1}: shot {record.shot + 1}, style {record.losses.get('style', 0.0):.4g}"
                      + (", resumed" if record.resumed else f", {record.seconds:.1f} s"), file=sys.stderr)
        if bar is not None:
            bar.set_postfix_str(f"shot {record.shot + 1}; style {record.losses.get('style', 0.0):.3g}"
                                + ("; resumed" if record.resumed else ""), refresh=False)
            bar.update(1)

    try:
        extra = {"command_line": ["gramstyle", *argv]}
        if executor is None:
            result = stylize_clip(Session(), frames, args.style, settings, flow, plan, outputs=outputs,
                                  record_extra=extra, on_frame=on_frame)
        else:
            result = stylize_shots(frames, args.style, settings, args.flow, plan, executor, outputs,
                                   record_extra=extra, on_frame=on_frame)
    finally:
        if bar is not None:
            bar.close()
    summary = {"input": str(args.input), "output": str(args.output), "styles": list(args.style),
               "settings": settings.to_dict(), "temporal_weight": plan.temporal_weight,
               "temporal_frames": list(plan.temporal_frames), "passes": plan.passes, "flow": args.flow,
               "frame_outputs": outputs, "command_line": ["gramstyle", *argv],
               "temporal_error_note": "mean squared RGB difference in [0, 1] between each output frame and the "
                                      "previous output warped onto it, over reliable pixels (Lai et al. 2018)",
               **result.summary()}
    if to_video:
        write_video(args.output, [imageio.to_pil(t) for t in result.outputs], clip.fps or Fraction(25),
                    clip.frames[0].size, clip.source)
    files.write_text(json.dumps(summary, indent=2) + "\n", record_path)
    if not args.quiet:
        err = summary["temporal_error_mean"]
        sys.stderr.write(f"wrote {args.output} ({len(frames)} frames, {len(result.shots)} shot(s), temporal error "
                         f"{'n/a' if err is None else f'{err:.4g}'}) and {record_path}\n")
