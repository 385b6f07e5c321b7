"""Video: the flow arithmetic of the temporal loss (warp, reliability, long-term weights, .flo files), the term's
gradient, and `gramstyle video` end to end on a folder of frames and on a video file."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from gramstyle import assets
from gramstyle import images as imageio
from gramstyle.apps.cli import main
from gramstyle.temporal import (
    FlowError,
    TemporalTerm,
    closest_first,
    disocclusions,
    motion_boundaries,
    read_flo,
    reliability,
    warp,
    warping_error,
    write_flo,
)


def _translation(h: int, w: int, dx: float, dy: float) -> torch.Tensor:
    return torch.zeros(h, w, 2) + torch.tensor([dx, dy])


def test_warp_of_a_known_translation() -> None:
    picture = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(0))
    warped = warp(picture, _translation(20, 30, 3.0, 2.0))  # each pixel samples p + (3, 2)
    assert torch.allclose(warped[:, :, :-2, :-3], picture[:, :, 2:, 3:], atol=1e-6)
    half = warp(picture, _translation(20, 30, 0.5, 0.0))  # bilinear between neighbours
    assert torch.allclose(half[..., :-1], (picture[..., :-1] + picture[..., 1:]) / 2, atol=1e-6)
    with pytest.raises(FlowError):
        warp(picture, _translation(10, 30, 0, 0))


def test_reliability_marks_a_synthetic_occlusion() -> None:
    # a 10x10 square moves 4 px right from frame 0 to frame 1 over a still background
    h, w = 32, 40
    inside0 = torch.zeros(h, w, dtype=torch.bool)
    inside0[10:20, 8:18] = True
    inside1 = torch.zeros(h, w, dtype=torch.bool)
    inside1[10:20, 12:22] = True
    forward = torch.zeros(h, w, 2)  # frame 0 -> 1
    forward[inside0] = torch.tensor([4.0, 0.0])
    backward = torch.zeros(h, w, 2)  # frame 1 -> 0
    backward[inside1] = torch.tensor([-4.0, 0.0])
    fb = disocclusions(backward, forward)
    uncovered = torch.zeros(h, w, dtype=torch.bool)
    uncovered[10:20, 8:12] = True  # background of frame 1 that the square hid in frame 0
    assert (fb[uncovered] == 0).all()
    assert (fb[inside1] == 1).all() and fb[0:8].eq(1).all() and fb[:, 25:].eq(1).all()
    c = reliability(backward, forward)
    assert c.sum() < fb.sum()  # the square's edges are motion boundaries
    assert (motion_boundaries(backward)[10:20, 0:6] == 1).all()
    assert (c[uncovered] == 0).all() and c[0:8].eq(1).all()
    # a pan: the pixels whose source left the frame are unreliable, the others reliable
    pan = disocclusions(_translation(h, w, 3, 0), _translation(h, w, -3, 0))
    assert pan[:, -3:].eq(0).all() and pan[:, :-3].eq(1).all()
    assert warping_error(torch.ones(1, 3, h, w), torch.zeros(1, 3, h, w), pan) == 1.0


def test_motion_boundaries_use_central_differences_as_ruders_checker() -> None:
    # a step of 4 px in u between columns 9 and 10: the central difference flags both sides of the step
    step = torch.zeros(8, 20, 2)
    step[:, 10:, 0] = 4.0
    boundaries = motion_boundaries(step)
    assert boundaries[:, 9].eq(0).all() and boundaries[:, 10].eq(0).all()
    assert boundaries[:, :9].eq(1).all() and boundaries[:, 11:].eq(1).all()
    # pixel-to-pixel noise of 0.05 px (an estimated flow's) is no boundary: its central difference cancels, where a
    # forward difference (0.05^2 > 0.002) would flag every pixel
    noise = torch.zeros(8, 20, 2)
    noise[:, ::2, 0] = 0.05
    assert motion_boundaries(noise)[1:-1, 1:-1].eq(1).all()


def test_symmetric_flow_averages_two_estimates_where_they_agree() -> None:
    from gramstyle.apps.video import symmetric

    h, w = 12, 16
    true = _translation(h, w, 2.0, 0.0)
    error = torch.zeros(h, w, 2)
    error[..., 1] = 0.2
    estimate = true + error  # a -> b, off by 0.2 px
    reverse = _translation(h, w, -2.0, 0.0) + error  # b -> a, followed back onto a: -(true) + error, negated
    out = symmetric(estimate, reverse)
    assert torch.allclose(out[:, :-3], true[:, :-3], atol=1e-5)  # the errors cancel where both are seen
    disagree = _translation(h, w, 5.0, 0.0)  # a reverse flow that does not return: the estimate is kept
    assert torch.equal(symmetric(estimate, disagree), estimate)


def test_estimated_flow_is_subpixel_on_a_pan() -> None:
    pytest.importorskip("cv2")
    from gramstyle.apps.video import EstimatedFlow

    big = imageio.load_image(assets.TUBINGEN, longest=160)
    frames = [imageio.to_pil(big[:, :, 8:56, 8 + 2 * t:72 + 2 * t]) for t in range(2)]  # 2 px per frame
    flow = EstimatedFlow(frames)
    backward = flow(1, 0)  # frame 1's pixel p shows what frame 0 had at p + (2, 0)
    error = (backward - torch.tensor([2.0, 0.0])).norm(dim=-1)[4:-4, 4:-4]
    assert float(error.mean()) < 0.05
    assert flow(1, 0) is backward  # kept


def test_long_term_weights_closest_first() -> None:
    c1 = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    c2 = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    c4 = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    long = closest_first([c1, c2, c4])
    assert long[0].tolist() == [[1, 0, 0, 1]]
    assert long[1].tolist() == [[0, 1, 0, 0]]
    assert long[2].tolist() == [[0, 0, 1, 0]]


def test_temporal_term_value_and_gradient() -> None:
    generator = torch.Generator().manual_seed(1)
    targets = tuple(torch.rand(1, 3, 6, 7, generator=generator, dtype=torch.float64) for _ in range(2))
    weights = tuple((torch.rand(6, 7, generator=generator, dtype=torch.float64) > 0.3).double() for _ in range(2))
    term = TemporalTerm(targets, weights, ("1", "2"))
    assert term.name == "temporal" and term.layers == ()
    x = torch.rand(1, 3, 6, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    value, parts = term({}, x)
    pairs = zip(targets, weights, strict=True)
    expected = sum(float((c * (x.detach() - t) ** 2).sum()) for t, c in pairs) / (3 * 6 * 7)
    assert float(value.detach()) == pytest.approx(expected)
    assert set(parts) == {"temporal:1", "temporal:2"}
    assert torch.autograd.gradcheck(lambda image: term({}, image)[0], (x,))
    assert term.resized((12, 14)).targets[0].shape == (1, 3, 12, 14)


def test_flo_round_trip(tmp_path: Path) -> None:
    flow = torch.randn(5, 9, 2)
    write_flo(tmp_path / "f.flo", flow)
    assert torch.equal(read_flo(tmp_path / "f.flo"), flow)
    raw = (tmp_path / "f.flo").read_bytes()
    assert raw[:4] == b"PIEH" and len(raw) == 12 + 8 * 45
    (tmp_path / "bad.flo").write_bytes(b"nope")
    with pytest.raises(FlowError):
        read_flo(tmp_path / "bad.flo")


def _pan_frames(source: Path, count: int, start: int = 0) -> list[torch.Tensor]:
    big = torch.nn.functional.interpolate(imageio.load_image(source, longest=256), size=(64, 128), mode="area")
    return [big[:, :, :48, start + 3 * t:start + 3 * t + 64] for t in range(count)]


def _folder_with_a_cut(frames: Path, pattern: str) -> list[str]:
    """Four 64 x 48 frames in `frames` (made), two pans of two pictures: a hard cut at frame 3; their names."""
    frames.mkdir()
    clip = _pan_frames(assets.TUBINGEN, 2) + _pan_frames(assets.THE_SCREAM, 2, start=10)
    names = [pattern.format(i) for i in range(4)]
    for name, frame in zip(names, clip, strict=True):
        imageio.save_image(frame, frames / name)
    return names


@pytest.mark.slow
def test_video_folder_end_to_end_with_a_cut_and_resume(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    names = _folder_with_a_cut(frames, "shot_{:02d}.png")  # a hard cut at frame 3
    out = tmp_path / "styled"
    argv = ["video", str(frames), str(assets.STARRY_NIGHT), "-o", str(out), "--size", "64", "--first-frame-steps",
            "4", "--frame-steps", "2", "--device", "cpu", "-q"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.glob("*.png")) == names
    record = json.loads((out / "clip.json").read_text())
    assert record["frames"] == 4 and record["shots"] == [1, 3]
    assert record["temporal_error"][0] is None and record["temporal_error"][2] is None
    assert record["temporal_error"][1] is not None and record["temporal_error_mean"] >= 0
    frame2 = json.loads((out / "shot_01.png.json").read_text())
    assert frame2["video"]["previous_frames"] == [1] and frame2["final_losses"]["temporal"] > 0
    assert frame2["steps"] <= 2
    # a rerun finds every frame done and redoes none
    (out / "clip.json").unlink()
    before = (out / "shot_03.png").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "shot_03.png").stat().st_mtime_ns == before
    assert all(f["resumed"] for f in json.loads((out / "clip.json").read_text())["frames_detail"])


@pytest.mark.slow
def test_video_file_round_trip_keeps_fps_size_and_audio(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    pytest.importorskip("cv2")
    source = tmp_path / "in.mp4"
    with av.open(str(source), "w") as container:
        video = container.add_stream("mpeg4", rate=Fraction(12))
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=22050)
        for frame in _pan_frames(assets.TUBINGEN, 3):
            for packet in video.encode(av.VideoFrame.from_image(imageio.to_pil(frame))):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        samples = (np.sin(np.arange(22050 // 4) / 10.0) * 0.3).astype(np.float32)[None]
        for start in range(0, samples.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]), format="fltp",
                                               layout="mono")
            chunk.sample_rate = 22050
            for packet in audio.encode(chunk):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    out = tmp_path / "out.mp4"
    assert main(["video", str(source), str(assets.STARRY_NIGHT), "-o", str(out), "--size", "64",
                 "--first-frame-steps", "3", "--frame-steps", "2", "--device", "cpu", "-q"]) == 0
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 12
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
        assert len(container.streams.audio) == 1
        assert len(list(container.decode(stream))) == 3
    record = json.loads(Path(str(out) + ".json").read_text())
    assert record["frames"] == 3 and record["temporal_error_mean"] is not None


def test_flow_folder_reads_ruders_names(tmp_path: Path) -> None:
    from gramstyle.apps.video import FlowFolder, VideoError

    forward, backward = torch.randn(4, 6, 2), torch.randn(4, 6, 2)
    write_flo(tmp_path / "forward_1_2.flo", forward)
    write_flo(tmp_path / "backward_2_1.flo", backward)
    flows = FlowFolder(tmp_path)
    assert torch.equal(flows(0, 1), forward) and torch.equal(flows(1, 0), backward)
    with pytest.raises(VideoError, match=r"backward_3_2\.flo"):
        flows(2, 1)
