"""A session keeps VGG-19 between runs, and runs the algorithm: images -> network -> targets -> descent -> image.

Loading the weights and building the network happen once per (weights, preprocessing, pooling, device) in a
session, and the reduced-precision copy once per precision; every later run of the session reuses them. A web
server, a batch worker or a video keep one session for their lifetime. A session runs one run at a time (a lock
serialises them), so it can be shared between threads.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import checkpoint as checkpoints
from . import color, stages
from . import images as imageio
from .checkpoint import Checkpointer
from .config import Settings
from .devices import out_of_memory_as_error, resolve_convolution, resolve_device, resolve_precision
from .errors import SettingsError
from .events import Callback, CancelToken, Progress, Stage
from .layers import canonical_layer
from .objective import Guidance, Objective, Term, canonical_weights
from .optimize import LoopState, optimize
from .result import Result
from .start import initial_image
from .tiling import TiledObjective, available_memory, plan_memory
from .vgg import VGGFeatures, load_weights

ImageLike = imageio.ImageLike
#: A function that adds terms to a stage's objective (video's temporal loss), given the stage, network and device.
ExtraTerms = Callable[[stages.Stage, VGGFeatures, torch.device], Sequence[tuple[Term, float]]]


class Session:
    """Keeps the networks it has built; `run` runs one task with them.

    ``max_networks`` bounds how many (weights, pooling, device) networks stay in memory (about 80 MB each in
    float32, twice that with a bfloat16 copy).
    """

    def __init__(self, max_networks: int = 2) -> None:
        self._networks: OrderedDict[tuple[str, str | None, str, str], VGGFeatures] = OrderedDict()
        self._max = max_networks
        self._lock = threading.RLock()
        self.builds = 0  # networks built so far (a reused one is not counted)

    def network(self, settings: Settings, device: torch.device) -> VGGFeatures:
        """The network for these settings' weights and pooling on `device`, built on first use."""
        key = (settings.weights, settings.preprocessing, settings.pooling, str(device))
        with self._lock:
            net = self._networks.get(key)
            if net is None:
                weights = load_weights(settings.weights, settings.preprocessing)
                net = VGGFeatures(weights, settings.pooling).to(device)
                self._networks[key] = net
                self.builds += 1
                while len(self._networks) > self._max:
                    self._networks.popitem(last=False)
            self._networks.move_to_end(key)
            return net

    def run(self, task: str, settings: Settings, *, content: ImageLike | None = None,
            styles: ImageLike | Sequence[ImageLike] | None = None, callback: Callback | None = None,
            cancel: CancelToken | None = None, init: torch.Tensor | None = None,
            extra_terms: ExtraTerms | None = None, checkpoint: Checkpointer | None = None,
            resume: str | os.PathLike[str] | dict[str, Any] | None = None) -> Result:
        """The algorithm: load images, take the network, bind targets, descend, quantise; in coarse-to-fine, once
        per scale, each starting from the last one's result upsampled.

        ``init`` (a (1, 3, h, w) tensor in [0, 1]) replaces the settings' start image; ``extra_terms`` is a
        function (stage, network, device) -> [(term, weight), ...] whose terms join each stage's objective.
        ``checkpoint`` writes the run's state (every N steps, on request, and at the end); ``resume`` (a
        checkpoint's path or its loaded dict) continues a run of the same settings and inputs exactly, for as many
        steps as these settings say (more than the checkpoint's: a finished run goes on).
        """
        with self._lock:
            return _run(self, task, settings, content, styles, callback, cancel, init, extra_terms, checkpoint,
                        resume)


_DEFAULT: Session | None = None
_DEFAULT_LOCK = threading.Lock()


def default_session() -> Session:
    """The process's shared session (the Python API's functions use it unless given another)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Session()
        return _DEFAULT


def _active_layers(settings: Settings, last: stages.Stage) -> tuple[tuple[tuple[str, float], ...],
                                                                      tuple[tuple[str, float], ...]]:
    """The content and style layers that take part: a part of eq. 7 takes part when it has an image, a positive
    weight and a layer of positive weight."""
    content_layers = settings.content_layers if last.content is not None and settings.alpha > 0 else ()
    style_layers = settings.style_layers if last.styles and settings.beta > 0 else ()
    return (tuple((name, w) for name, w in content_layers if w > 0),
            tuple((name, w) for name, w in style_layers if w > 0))


def _objective(net: VGGFeatures, stage: stages.Stage, settings: Settings, content_layers: Sequence[tuple[str, float]],
               style_layers: Sequence[tuple[str, float]], device: torch.device, precision: torch.dtype,
               extra_terms: ExtraTerms | None, tile: int | None = None,
               winograd: bool = False) -> Objective | TiledObjective:
    guidance = (Guidance(stage.guidance.output.to(device), [g.to(device) for g in stage.guidance.styles])
                if stage.guidance is not None else None)
    if tile is not None:
        if guidance is not None:
            raise SettingsError("spatial control ({content_mask}) is not tiled yet, and this size needs tiles; give a "
                                "smaller {size}", field="tile")
        tiled = TiledObjective.build(
            net, tile, content_image=None if stage.content is None else stage.content.to(device),
            content_weights=canonical_weights(content_layers), style_images=[s.to(device) for s in stage.styles],
            style_weights=canonical_weights(style_layers), style_blend=settings.style_blend, alpha=settings.alpha,
            beta=settings.beta, tv_weight=settings.tv_weight, precision=precision)
        if extra_terms is not None:
            for term, weight in extra_terms(stage, net, device):
                tiled = tiled.with_term(term, weight)
        return tiled
    objective = Objective.for_settings(
        net, settings.replace(content_layers=content_layers, style_layers=style_layers),
        content_image=None if stage.content is None else stage.content.to(device),
        style_images=[s.to(device) for s in stage.styles], guidance=guidance, precision=precision,
        winograd=winograd)
    if extra_terms is not None:
        for term, weight in extra_terms(stage, net, device):
            objective = objective.with_term(term, weight)
    return objective


class _Clock:
    """Turns a stage's step reports into the run's events: the run's step count, and an estimate of the time
    left (the stage's mean step time for its remaining steps, later stages scaled by their pixels, a step's
    cost being nearly proportional to its pixels)."""

    def __init__(self, plan: list[stages.Stage], time_limit: float | None, callback: Callback | None) -> None:
        self.plan, self.time_limit, self.callback = plan, time_limit, callback
        self.total = sum(s.steps for s in plan)
        self.done = 0  # steps of finished stages
        self.elapsed = 0.0  # seconds of finished stages

    def stage(self, index: int) -> Stage:
        s = self.plan[index]
        return Stage(index, len(self.plan), s.size, s.shape, s.steps)

    def event(self, kind: str, index: int, image: torch.Tensor | None, losses: dict[str, float] | None = None,
              stage_step: int = 0, stage_elapsed: float = 0.0) -> bool | None:
        if self.callback is None:
            return None
        eta = None
        if stage_step > 0:
            per_step = stage_elapsed / stage_step
            pixels = self.plan[index].shape[0] * self.plan[index].shape[1]
            left = (self.plan[index].steps - stage_step) * per_step
            left += sum(s.steps * per_step * (s.shape[0] * s.shape[1]) / pixels for s in self.plan[index + 1:])
            eta = left
            if self.time_limit is not None:
                eta = min(eta, max(0.0, self.time_limit - self.elapsed - stage_elapsed))
        progress = Progress(step=self.done + stage_step, steps=self.total, elapsed=self.elapsed + stage_elapsed,
                            losses=dict(losses or {}), image=image, kind=kind,  # type: ignore[arg-type]
                            stage=self.stage(index), eta=eta, stage_step=stage_step)
        return self.callback(progress)

    def step_callback(self, index: int) -> Callback:
        def report(progress: Progress) -> bool | None:
            return self.event("step", index, progress.image, progress.losses, progress.step, progress.elapsed)

        return report


def _run(session: Session, task: str, settings: Settings, content: ImageLike | None,
         styles: ImageLike | Sequence[ImageLike] | None, callback: Callback | None, cancel: CancelToken | None,
         init: torch.Tensor | None, extra_terms: ExtraTerms | None, checkpoint: Checkpointer | None = None,
         resume: str | os.PathLike[str] | dict[str, Any] | None = None) -> Result:
    settings = settings.validated()
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    style_list = stages.as_list(styles)
    if styles is not None and not style_list:
        raise SettingsError("give at least one style image")
    plan = stages.plan(settings, content, style_list)  # every input error before any work
    last = plan[-1]
    content_layers, style_layers = _active_layers(settings, last)
    layers = [canonical_layer(name) for name, _ in (*content_layers, *style_layers)]
    if not layers:
        raise SettingsError("nothing to optimize: {alpha}, {beta} and the layer weights leave no term of the loss")

    first = plan[0]
    if init is not None:
        x = torch.nn.functional.interpolate(init.float(), size=first.shape, mode="bicubic", align_corners=False) \
            if tuple(init.shape[2:]) != first.shape else init.float()
    else:
        x = initial_image(settings.init, first.shape, settings.seed, first.content, first.styles,
                          settings.max_pixels, settings.color_match)
    history: list[dict[str, float]] = []
    clock = _Clock(plan, settings.time_limit, callback)
    reason = "steps"
    inputs_digest = checkpoints.digest_inputs([last.content, *last.styles, init,
                                               None if last.guidance is None else last.guidance.output])
    start_stage, resumed = 0, None
    if resume is not None:
        data = resume if isinstance(resume, dict) else checkpoints.load(resume)
        checkpoints.verify(data, settings, inputs_digest, "the checkpoint" if isinstance(resume, dict) else
                           str(resume))
        start_stage, resumed = int(data["stage"]), data["loop"]
        history = [dict(h) for h in data["run_history"]]
        clock.done, clock.elapsed = int(data["done"]), float(data["elapsed"])
        torch.set_rng_state(data["rng"])
        x = resumed["x"]
    # the state a checkpoint saves: the stage of the last step boundary, the run before that stage, its loop
    current: dict[str, Any] = {}

    def provide() -> dict[str, Any] | None:
        if not current or not current["loop"].consistent:  # none yet, or interrupted inside the optimizer
            return None
        return {"settings_digest": checkpoints.digest_settings(settings), "inputs_digest": inputs_digest,
                "settings": checkpoints.settings_identity(settings), "stage": current["stage"],
                "loop": current["loop"].capture(), "run_history": current["history"], "done": current["done"],
                "elapsed": current["elapsed"], "rng": torch.get_rng_state(), "steps": [s.steps for s in plan]}

    if checkpoint is not None:
        checkpoint.bind(provide)
    with out_of_memory_as_error(settings.size):
        net = session.network(settings, device)
        objective: Objective | TiledObjective | None = None
        tile: int | None = None
        tiles: list[int | None] = []
        convolutions: list[str] = []
        winograd = False
        history_sizes: list[int] = []
        for index, stage in enumerate(plan):
            if index < start_stage:
                continue
            if x.shape[2:] != stage.shape:  # coarse-to-fine: the last scale's result, upsampled, is the start
                x = torch.nn.functional.interpolate(x, size=stage.shape, mode="bicubic", align_corners=False)
            time_left = None if settings.time_limit is None else settings.time_limit - clock.elapsed
            if time_left is not None and time_left <= 0 and history:
                reason = "time limit"
                break
            if cancel is not None and cancel.cancelled and history:
                reason = "cancelled"
                break
            # the memory preflight, before the targets: tiles only where the untiled step would not fit
            untiled_winograd = resolve_convolution(settings.convolution, device, precision, tiled=False,
                                                   pixels=stage.shape[0] * stage.shape[1])
            memory = plan_memory(net, stage.shape, layers, [canonical_layer(n) for n, _ in content_layers],
                                 precision, settings.tile, settings.history_size, settings.optimizer,
                                 available_memory(device), steps=stage.steps, winograd=untiled_winograd)
            tile = memory.tile
            tiles.append(tile)
            history_sizes.append(memory.history)
            winograd = untiled_winograd and tile is None  # tiled stages are direct (exact)
            convolutions.append("winograd" if winograd else "direct")
            objective = _objective(net, stage, settings, content_layers, style_layers, device, precision,
                                   extra_terms, tile, winograd)
            if clock.event("stage_start", index, x):
                reason = "cancelled"
                break
            before = {"stage": index, "history": [dict(h) for h in history], "done": clock.done,
                      "elapsed": clock.elapsed}

            def boundary(loop: LoopState, before: dict[str, Any] = before) -> None:
                current.update(before, loop=loop)
                if checkpoint is not None:
                    checkpoint.boundary(clock.done + loop.step)

            resume_loop = None
            if resumed is not None and index == start_stage:
                resume_loop = {**resumed, "x": resumed["x"].to(device), "best_image": resumed["best_image"].to(device)}
            result = optimize(objective, x.to(device), method=settings.optimizer, steps=stage.steps,
                              lr=settings.step_size, history_size=memory.history, time_limit=time_left,
                              callback=clock.step_callback(index), cancel=cancel, resume=resume_loop,
                              boundary=boundary, scaling=settings.lbfgs_scaling)
            history += [{**h, "step": h["step"] + clock.done, "elapsed": h["elapsed"] + clock.elapsed,
                         "scale": float(stage.size)} for h in result.history]
            x, reason = result.image.clamp(0, 1), result.stop_reason
            clock.event("stage_end", index, x, result.history[-1] if result.history else None, result.steps,
                        result.elapsed)
            clock.done += result.steps
            clock.elapsed += result.elapsed
            if reason in ("cancelled", "time limit"):
                break
        if objective is None or x.shape[2:] != last.shape:
            # stopped before the last scale: the picture still has the asked size, scored on the last objective
            x = torch.nn.functional.interpolate(x, size=last.shape, mode="bicubic", align_corners=False)
            objective = _objective(net, last, settings, content_layers, style_layers, device, precision,
                                   extra_terms, tile, winograd)
        if checkpoint is not None:  # the end is a checkpoint too: a finished run can go on (more steps)
            checkpoint.write()
        output = imageio.to_pil(x)
        with torch.no_grad():  # score what the user gets: the clipped, 8-bit image
            final = objective(imageio.to_tensor(output).to(device), exact=True).floats()
        if settings.preserve_color == "luminance" and last.original_content is not None:
            # The losses above are those of the luminance image that was optimized; the picture gets the
            # content's chroma back (sec. 2.2 of the colour paper).
            output = imageio.to_pil(color.recombine(imageio.to_tensor(output), last.original_content))
    return Result(image=output, losses=final, history=history, settings=settings, task=task,
                  steps=len(history), stop_reason=reason, elapsed=clock.elapsed, device=str(device),
                  precision="bf16" if precision == torch.bfloat16 else "fp32",
                  weights={"source": net.source, "sha256": net.sha256, "preprocessing": net.preprocessing.name},
                  inputs=stages.describe_inputs(content=content, style=style_list or None), tiles=tiles,
                  convolutions=convolutions,
                  history_sizes=history_sizes,
                  deterministic=device.type == "cpu" and torch.are_deterministic_algorithms_enabled())

