"""The optimizers' state in checkpoints: every attribute captured (from vars()), restored, refused if uncapturable."""

from __future__ import annotations

import pytest
import torch

from gramstyle.optimize import LBFGS, Adam, restore_stepper, stepper_state


def _exercised(stepper: object) -> object:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(12, generator=g)
    for _ in range(4):
        proposal = stepper.propose(x, float((x - 0.3).pow(2).sum()), 2 * (x - 0.3))  # type: ignore[attr-defined]
        x = proposal if proposal is not None else x
    return stepper


@pytest.mark.parametrize("make", [lambda: LBFGS(history_size=3), lambda: Adam(torch.zeros(12), 0.1)])
def test_every_optimizer_attribute_is_captured_and_restored(make: object) -> None:
    # reads vars(): an attribute another version adds is captured, or refused by name if a checkpoint cannot hold it
    stepper = _exercised(make())  # type: ignore[operator]
    state = stepper_state(stepper)
    assert set(state) == set(vars(stepper))
    fresh = make()  # type: ignore[operator]
    restore_stepper(fresh, state)
    x = torch.full((12,), 0.5)
    a = stepper.propose(x, float((x - 0.3).pow(2).sum()), 2 * (x - 0.3))  # type: ignore[attr-defined]
    b = fresh.propose(x, float((x - 0.3).pow(2).sum()), 2 * (x - 0.3))
    assert torch.equal(a, b)
    stepper.new_thing = object()  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="new_thing"):
        stepper_state(stepper)
