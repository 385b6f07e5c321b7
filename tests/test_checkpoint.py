"""Checkpoints and exact resume, reproducibility, and tiled runs through the session (real weights, 64 px)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch

from gramstyle import Settings, tiling
from gramstyle import session as session_module
from gramstyle.assets import DEMO_CONTENT, DEMO_STYLE
from gramstyle.checkpoint import Checkpointer, CheckpointError, load
from gramstyle.devices import resolve_convolution
from gramstyle.errors import SettingsError
from gramstyle.optimize import LBFGS
from gramstyle.session import Session

pytestmark = pytest.mark.slow  # every test here optimizes the real images (64 px, a few steps)

BASE = Settings(size=64, steps=6, precision="fp32", tile="off")
# whether BASE's untiled stages take Winograd's route here (their memory plan counts its workspace)
WINOGRAD = resolve_convolution("auto", torch.device("cpu"), torch.float32, tiled=False, pixels=64 * 48)


@pytest.fixture(scope="module")
def session() -> Session:
    return Session()


def _png(result: object) -> bytes:
    buffer = io.BytesIO()
    result.image.save(buffer, format="PNG")  # type: ignore[attr-defined]
    return buffer.getvalue()


def _run(session: Session, settings: Settings = BASE, **kwargs: object) -> object:
    return session.run("transfer", settings, content=DEMO_CONTENT, styles=DEMO_STYLE, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def uninterrupted(session: Session) -> bytes:
    return _png(_run(session))


def test_same_command_twice_gives_the_same_bytes(session: Session, uninterrupted: bytes) -> None:
    result = _run(session)
    assert _png(result) == uninterrupted
    assert result.deterministic == torch.are_deterministic_algorithms_enabled()  # CPU: deterministic iff enabled


def test_resume_after_interruption_gives_the_uninterrupted_bytes(session: Session, uninterrupted: bytes,
                                                                 tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "out.ckpt", every=3)
    # cancelled during step 5 (by the callback): the run's last checkpoint is the boundary after step 4
    stop = lambda p: p.kind == "step" and p.step == 5  # noqa: E731
    first = _run(session, callback=stop, checkpoint=ckpt)
    assert first.stop_reason == "cancelled"
    data = load(tmp_path / "out.ckpt")
    assert data["loop"]["step"] == 4  # the boundary before the cancelled step: step 5 is evaluated again
    assert set(data["loop"]["stepper"]) == set(vars(LBFGS()))
    resumed = _run(session, resume=tmp_path / "out.ckpt")
    assert resumed.steps == 6 and _png(resumed) == uninterrupted


def test_more_steps_extends_a_finished_run(session: Session, uninterrupted: bytes, tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "short.ckpt")
    short = _run(session, BASE.replace(steps=3), checkpoint=ckpt)
    assert short.steps == 3 and ckpt.written == 1
    longer = _run(session, BASE.replace(steps=6), resume=tmp_path / "short.ckpt")
    assert _png(longer) == uninterrupted


def test_checkpoint_from_other_settings_or_inputs_is_refused(session: Session, tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path / "a.ckpt")
    _run(session, BASE.replace(steps=1), checkpoint=ckpt)
    with pytest.raises(CheckpointError, match=r"other settings: beta 1000\.0 there, 100\.0 here"):
        _run(session, BASE.replace(beta=100.0), resume=tmp_path / "a.ckpt")
    with pytest.raises(CheckpointError, match="other input images"):
        session.run("transfer", BASE, content=DEMO_STYLE, styles=DEMO_STYLE, resume=tmp_path / "a.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a gramstyle checkpoint"):
        _run(session, resume=tmp_path / "junk.ckpt")


def test_tiled_run_follows_the_untiled_one(session: Session) -> None:
    settings = BASE.replace(steps=2)
    untiled = _run(session, settings)
    tiled = _run(session, settings.replace(tile="48"))  # 64 x 48: two tiles
    assert tiled.tiles == [48] and untiled.tiles == [None]
    for a, b in zip(untiled.history, tiled.history, strict=True):
        assert math.isclose(a["total"], b["total"], rel_tol=1e-4)


def test_auto_tiles_only_when_untiled_would_not_fit(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    net = session.network(BASE, torch.device("cpu"))
    layers = ["conv4_2", "conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
    shape = (48, 64)
    untiled = tiling.estimate(net, shape, layers, ["conv4_2"], torch.float32, None, 50, "lbfgs", WINOGRAD).total
    monkeypatch.setattr(session_module, "available_memory", lambda device: int(untiled / tiling.USABLE) + 1)
    assert _run(session, BASE.replace(steps=1, tile="auto")).tiles == [None]
    monkeypatch.setattr(session_module, "available_memory", lambda device: 2**30)
    with pytest.raises(SettingsError, match=r"needs about .* GiB .* available; size \d+ would fit") as info:
        _run(session, BASE.replace(steps=1, size=1024, tile="off"))
    assert info.value.field == "size"


def test_memory_plan_counts_the_pairs_a_stage_can_hold_and_shortens_the_history_to_fit(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    net = session.network(BASE, torch.device("cpu"))
    layers = ["conv4_2", "conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
    shape, vector = (48, 64), 48 * 64 * 3 * 4  # one L-BFGS vector of this stage, bytes

    def plan(pairs_room: float, steps: int) -> tiling.MemoryPlan:
        base = tiling.estimate(net, shape, layers, ["conv4_2"], torch.float32, None, 0, "lbfgs", WINOGRAD).total
        available = (base + 2 * vector * pairs_room) / tiling.USABLE
        return tiling.plan_memory(net, shape, layers, ["conv4_2"], torch.float32, "auto", 50, "lbfgs",
                                  int(available), steps=steps, winograd=WINOGRAD)

    assert plan(15.5, steps=12) == tiling.MemoryPlan(None, 50)  # 12 steps hold at most 12 pairs: the whole fits
    assert plan(15.5, steps=100) == tiling.MemoryPlan(None, 15)  # shortened to the 15 pairs that fit
    with pytest.raises(SettingsError, match="would fit"):
        plan(tiling.MIN_HISTORY - 1.5, steps=100)  # below the floor: refused, with the size that fits
    base = tiling.estimate(net, shape, layers, ["conv4_2"], torch.float32, None, 0, "lbfgs", WINOGRAD).total
    monkeypatch.setattr(session_module, "available_memory",
                        lambda device: int((base + 2 * vector * 15.5) / tiling.USABLE))
    run = _run(session, BASE.replace(steps=20, tile="auto"))
    assert run.tiles == [None] and run.history_sizes == [15]


def test_cli_checkpoint_then_more_steps_gives_the_uninterrupted_bytes(tmp_path: Path) -> None:
    from gramstyle.apps.cli import main

    common = ["demo", "--size", "64", "--precision", "fp32", "--tile", "off", "-q"]
    assert main([*common, "--steps", "4", "-o", str(tmp_path / "whole.png")]) == 0
    assert main([*common, "--steps", "2", "--checkpoint-every", "1", "-o", str(tmp_path / "part.png")]) == 0
    assert (tmp_path / "part.png.ckpt").is_file()
    assert main([*common, "--steps", "2", "--more-steps", "2", "-o", str(tmp_path / "part.png")]) == 0
    assert (tmp_path / "part.png").read_bytes() == (tmp_path / "whole.png").read_bytes()
    assert main([*common, "--steps", "2", "--beta", "10", "--resume", str(tmp_path / "part.png.ckpt"),
                 "-o", str(tmp_path / "other.png")]) == 2  # other settings: refused


def test_coarse_to_fine_resumes_in_its_second_stage(session: Session, tmp_path: Path) -> None:
    settings = BASE.replace(size=80, scales="64,80", scale_steps="2,2")
    whole = _png(_run(session, settings))
    ckpt = Checkpointer(tmp_path / "c2f.ckpt", every=1)
    _run(session, settings, checkpoint=ckpt, callback=lambda p: p.kind == "step" and p.step == 4)
    data = load(tmp_path / "c2f.ckpt")
    assert (data["stage"], data["done"], data["loop"]["step"]) == (1, 2, 1)
    resumed = _run(session, settings, resume=tmp_path / "c2f.ckpt")
    assert resumed.steps == 4 and [h["scale"] for h in resumed.history] == [64, 64, 80, 80]
    assert _png(resumed) == whole


def test_cli_checks_the_checkpoint_path_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gramstyle.apps.cli import main

    out = tmp_path / "out.png"
    common = ["demo", "--size", "64", "--steps", "1", "-q", "-o", str(out)]
    assert main([*common, "--checkpoint", str(tmp_path / "missing" / "x.ckpt")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main([*common, "--checkpoint", str(out)]) == 2  # the checkpoint would overwrite the picture
    assert "same file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # refused before anything was written
