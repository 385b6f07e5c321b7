"""Issue #15, case by case: bad paths, special files, signals, the write race and the Python API's settings.

Each test names the case of docs/reliability.md it proves. Path and settings checks run in-process and need no
network (they fail before it loads); the signal tests and the unprivileged user run real subprocesses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import gramstyle
from gramstyle import files, outputs
from gramstyle.apps import entry
from gramstyle.config import Settings
from gramstyle.errors import GramstyleError, ImageError, SettingsError
from gramstyle.result import Result, save_result
from test_cli import CONTENT, STYLE, assert_one_line_error, run_cli

FAST = ["--size", "64", "--steps", "2", "--quiet"]
T = ["transfer", CONTENT, STYLE]
SRC = str(Path(gramstyle.__file__).resolve().parents[1])


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC, **extra}


def make_char_device(path: Path) -> Path:
    """A character device with /dev/null's numbers, made in a temporary folder (never the real /dev)."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, AttributeError, OSError) as exc:
        pytest.skip(f"cannot make a device node here ({exc})")
    return path


# --- 1. path checks: OS errors become one line, before any work ---------------------------------------------------

@pytest.mark.parametrize("option,name,reason", [
    ("-o", "n" * 296 + ".png", "File name too long"),  # the image's own name
    ("-o", "m" * 250 + ".png", "too long"),  # the image's name is legal, OUT.json's is not
    ("--log", "n" * 296 + ".csv", "File name too long"),
])
def test_long_names_are_refused_before_the_run(option: str, name: str, reason: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.png"
    argv = [*T, *FAST, "-o", str(out)]
    if option == "-o":
        argv[-1] = str(tmp_path / name)
    else:
        argv += ["--log", str(tmp_path / name)]
    started = time.perf_counter()
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, [reason])
    assert time.perf_counter() - started < 5  # refused before the network loads
    assert listing(tmp_path) == []
    if name.startswith("m"):
        assert ".json" in err  # the record is the name at fault


def test_long_weights_name_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = str(tmp_path / ("n" * 296 + ".pth"))
    code, _, err = run_cli(capsys, *T, *FAST, "-o", str(tmp_path / "out.png"), "--weights", weights,
                           "--preprocessing", "caffe")
    assert_one_line_error(code, err, ["File name too long", "n" * 296])
    assert listing(tmp_path) == []


def test_symlink_loop_is_reported_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.png").symlink_to("b.png")
    (tmp_path / "b.png").symlink_to("a.png")
    code, _, err = run_cli(capsys, *T, *FAST, "-o", str(tmp_path / "a.png"))
    assert_one_line_error(code, err, ["a.png", "symbolic links"])
    code, _, err = run_cli(capsys, "transfer", str(tmp_path / "a.png"), STYLE, *FAST, "-o", str(tmp_path / "o.png"))
    assert_one_line_error(code, err, ["a.png", "loop of symbolic links"])


# --- the unprivileged user (a container run as --user 1000) ---------------------------------------------------------

# The interpreter lives under /root here, which `nobody` may not enter, so privileges cannot be dropped before
# exec (preexec_fn): the child imports as root, then drops to nobody (setgid, setuid) and runs the command line.
_AS_NOBODY = """
import os, sys
import gramstyle.apps.cli as cli, gramstyle.vgg, gramstyle.session, gramstyle.result, tqdm, csv, json
import PIL.PngImagePlugin, PIL.JpegImagePlugin, encodings.ascii
os.setgroups([]); os.setgid(65534); os.setuid(65534)
sys.exit(cli.main(sys.argv[1:]))
"""


def nobody_run(*argv: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _AS_NOBODY, *argv], cwd=cwd, env=env(**extra),
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder `nobody` may write (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="gramstyle-nobody-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


_ROOT_ONLY = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not Path("/root").is_dir()
                                or stat.S_IMODE(os.stat("/root").st_mode) & 0o005,
                                reason="needs root (to drop to nobody) and a /root that others may not enter")


@_ROOT_ONLY
def test_unprivileged_output_in_root_is_one_line(shared_folder: Path) -> None:
    proc = nobody_run(*T, *FAST, "-o", "/root/out.png", cwd=shared_folder)
    assert_one_line_error(proc.returncode, proc.stderr, ["/root/out.png", "Permission denied"])
    assert not Path("/root/out.png").exists()


@_ROOT_ONLY
@pytest.mark.slow
def test_unprivileged_caffe_normalized_with_home_root_runs(shared_folder: Path) -> None:
    """HOME=/root, no cache configured: the normalised network's cache is unreadable and unwritable; the means are
    recomputed and the run succeeds."""
    environment = {k: v for k, v in env(HOME="/root").items() if k not in ("GRAMSTYLE_CACHE", "XDG_CACHE_HOME")}
    out = shared_folder / "out.png"
    proc = subprocess.run([sys.executable, "-c", _AS_NOBODY, *T, *FAST, "-o", str(out), "--weights",
                           "caffe-normalized"], cwd=shared_folder, env=environment, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert out.is_file() and json.loads(Path(str(out) + ".json").read_text())["weights"]["source"] == \
        "caffe-normalized"


# --- 5. two outputs of one run that are one file --------------------------------------------------------------------

@pytest.mark.parametrize("case", ["log-is-output", "log-is-record", "log-links-to-output", "log-is-intermediate",
                                  "log-hard-link-to-record", "record-links-to-image"])
def test_two_outputs_that_are_one_file_are_refused(case: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"old image")
    record = tmp_path / "out.png.json"
    extra: list[str] = []
    if case == "log-is-output":
        extra = ["--log", str(out)]
    elif case == "log-is-record":
        record.write_text("{}")
        extra = ["--log", str(record)]
    elif case == "log-links-to-output":
        (tmp_path / "losses.csv").symlink_to(out)
        extra = ["--log", str(tmp_path / "losses.csv")]
    elif case == "log-is-intermediate":
        extra = ["--log", str(tmp_path / "out_step00001.png"), "--save-every", "1"]
    elif case == "log-hard-link-to-record":
        record.write_text("{}")
        os.link(record, tmp_path / "losses.csv")
        extra = ["--log", str(tmp_path / "losses.csv")]
    else:
        record.symlink_to(out)
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    code, _, err = run_cli(capsys, *T, *FAST, "-o", str(out), *extra)
    assert_one_line_error(code, err, [])
    assert "same file" in err or "overwritten by an intermediate" in err, err
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


# --- 6. special files ------------------------------------------------------------------------------------------------

def test_output_on_a_device_node_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    device = make_char_device(tmp_path / "out.png")
    code, _, err = run_cli(capsys, *T, *FAST, "-o", str(device))
    assert_one_line_error(code, err, ["out.png", "character device"])
    assert stat.S_ISCHR(os.stat(device).st_mode)


def test_output_on_a_fifo_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "out.png"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, *T, *FAST, "-o", str(fifo))
    assert_one_line_error(code, err, ["out.png", "named pipe"])
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_plan_lets_the_log_write_through_a_device(tmp_path: Path) -> None:
    device = make_char_device(tmp_path / "null")
    plan = outputs.plan(tmp_path / "out.png", log=device)
    assert plan.log_through
    with pytest.raises(ImageError, match="character device"):
        outputs.plan(device)  # an image, its record: never on a device


@pytest.mark.slow
def test_log_on_a_device_node_is_written_through(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    device = make_char_device(tmp_path / "null")
    out = tmp_path / "out.png"
    code, _, err = run_cli(capsys, *T, "--size", "64", "--steps", "2", "-o", str(out), "--log", str(device))
    assert code == 0, err
    assert stat.S_ISCHR(os.stat(device).st_mode)  # still the device, not a 416-byte file
    assert listing(tmp_path) == ["null", "out.png", "out.png.json"]
    assert f"and {out}.json and {device}" in err  # the message says exactly what was written


@pytest.mark.slow
def test_log_to_dev_stdout_is_written_through(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "gramstyle", *T, *FAST, "-o", str(tmp_path / "out.png"),
                           "--log", "/dev/stdout"], cwd=tmp_path, env=env(), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("total,") or "step" in proc.stdout.splitlines()[0]
    assert listing(tmp_path) == ["out.png", "out.png.json"]


@pytest.mark.slow
def test_symlinked_output_is_written_through_to_its_target(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "picture.png"
    target.write_bytes(b"old")
    link = tmp_path / "out.png"
    link.symlink_to(target)
    code, _, err = run_cli(capsys, *T, "--size", "64", "--steps", "2", "-q", "-o", str(link))
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    with Image.open(target) as image:
        assert image.format == "PNG"
    record = json.loads(Path(str(link) + ".json").read_text())
    assert record["image_sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()


# --- 4. one atomic publish: the lock, the sha256, the race ---------------------------------------------------------

def fake_result(seed: int) -> Result:
    image = Image.frombytes("RGB", (32, 32), bytes((seed * 7 + i) % 256 for i in range(32 * 32 * 3)))
    return Result(image=image, losses={"total": float(seed), "content": 0.0, "style": 0.0},
                  history=[{"step": 1.0, "total": float(seed)}], settings=Settings(), task="transfer", steps=1,
                  stop_reason="steps", elapsed=0.0, device="cpu", weights={})


def test_record_carries_the_image_sha256_and_no_lock_or_temporary_remains(tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    written: list[Path] = []
    save_result(fake_result(1), str(out), log=str(tmp_path / "log.csv"), written=written)
    assert written == [out, tmp_path / "out.png.json", tmp_path / "log.csv"]
    record = json.loads((tmp_path / "out.png.json").read_text())
    assert record["image_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert listing(tmp_path) == ["log.csv", "out.png", "out.png.json"]


def test_write_race_forced_with_a_barrier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two threads publish to one output at once; the renames are slowed so that without the lock B's image
    would stand beside A's record. With it, the record's image_sha256 always matches the image."""
    out = tmp_path / "out.png"
    real_replace = os.replace

    def slow_replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        time.sleep(0.005)

    monkeypatch.setattr(os, "replace", slow_replace)

    for round_ in range(8):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def publish(seed: int, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors) -> None:
            try:
                barrier.wait()
                save_result(fake_result(seed), str(out))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=publish, args=(2 * round_ + k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        record = json.loads((tmp_path / "out.png.json").read_text())
        assert record["image_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest(), f"round {round_}"
        assert listing(tmp_path) == ["out.png", "out.png.json"]


def test_the_lock_serialises_writers_across_threads(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    inside, most = [0], [0]
    guard = threading.Lock()
    barrier = threading.Barrier(4)

    def hold() -> None:
        barrier.wait()
        with files.locked(target):
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.02)
            with guard:
                inside[0] -= 1

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
    assert listing(tmp_path) == []  # the lock file is removed by its last holder


def test_a_users_file_named_like_the_lock_is_kept(tmp_path: Path) -> None:
    (tmp_path / "out.png.lock").write_text("my notes")
    save_result(fake_result(6), str(tmp_path / "out.png"))
    assert (tmp_path / "out.png.lock").read_text() == "my notes"


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    stale = [tmp_path / ".out.png.abcd1234.tmp.png", tmp_path / ".out.png.json.k2_9zz01.tmp.json"]
    unrelated = tmp_path / ".out.png.json.keep"  # not a temporary's shape: left alone
    for path in [*stale, unrelated]:
        path.write_bytes(b"half")
    save_result(fake_result(3), str(out))
    assert listing(tmp_path) == [".out.png.json.keep", "out.png", "out.png.json"]


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(1), entry.Interrupted(signal.SIGTERM)])
def test_no_temporary_remains_on_any_exception(error: BaseException, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"old")

    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr("gramstyle.images.encode_image", fail)
    with pytest.raises(type(error)):
        save_result(fake_result(4), str(out))
    assert listing(tmp_path) == ["out.png"] and out.read_bytes() == b"old"


def test_an_interrupt_between_the_renames_is_held_until_both_are_done(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.png"
    real_replace = os.replace
    calls = [0]

    def replace_then_interrupt(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        calls[0] += 1
        if calls[0] == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C right after the image's rename

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    written: list[Path] = []
    # Python's own Ctrl-C handler, whatever an earlier test or library left in this process (a SIGINT that is
    # ignored is rightly not raised after the renames, and the test would not see it)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            save_result(fake_result(5), str(out), written=written)
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert written == [out, tmp_path / "out.png.json"]  # both, then the interrupt
    record = json.loads((tmp_path / "out.png.json").read_text())
    assert record["image_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert listing(tmp_path) == ["out.png", "out.png.json"]


# --- 2, 3. one signal policy -----------------------------------------------------------------------------------------

def _handles_sigterm(pid: int) -> bool:
    """Whether the process has installed a SIGTERM handler (our entry point's first act)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return False


def _interrupted_run(tmp_path: Path, signum: int, delay: float | str) -> tuple[subprocess.Popen[str], str]:
    out = tmp_path / "out.png"
    out.write_bytes(b"the previous result")
    proc = subprocess.Popen([sys.executable, "-m", "gramstyle", *T, "--size", "64", "--steps", "300",
                             "-o", str(out)], cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if isinstance(delay, float) or delay == "handler":  # from the first instant our code runs
        deadline = time.monotonic() + 60
        while not _handles_sigterm(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(delay if isinstance(delay, float) else 0.0)
    elif delay == "running":  # during the optimization: after the progress bar's first step
        assert proc.stderr is not None
        seen = ""
        # tqdm throttles its output, so the first step it shows may be any: wait for one that is not 0
        while not re.search(r"(?<![0-9])[1-9][0-9]*/300", seen) and proc.poll() is None:
            seen += proc.stderr.read(1)
    assert proc.poll() is None, "the run ended before the signal"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    return proc, err


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/PID/status")
# Both signals where the process may still be in Python's start-up (whose defaults differ for the two); from
# then on one handler takes both alike (gramstyle.apps.entry), so one signal each at the later moments.
@pytest.mark.parametrize(("delay", "signum"), [
    pytest.param(d, s, id=f"{d}-{s.name}") for d, s in [
        ("handler", signal.SIGINT), ("handler", signal.SIGTERM), (0.05, signal.SIGINT), (0.05, signal.SIGTERM),
        (0.3, signal.SIGTERM), (1.0, signal.SIGINT), ("running", signal.SIGTERM)]])
def test_signal_at_any_moment_is_one_line_and_replaces_nothing(signum: int, delay: float | str,
                                                              tmp_path: Path) -> None:
    proc, err = _interrupted_run(tmp_path, signum, delay)
    assert proc.returncode == 128 + signum, err  # 130 for SIGINT, 143 for SIGTERM
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and "step/s" not in line and "|" not in line]
    assert len(lines) == 1 and lines[0].startswith("gramstyle: interrupted; "), err
    assert (tmp_path / "out.png").read_bytes() == b"the previous result"
    assert listing(tmp_path) == ["out.png"]  # no temporaries, no record, no lock


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.05])
def test_sigterm_before_our_code_runs_writes_nothing(delay: float, tmp_path: Path) -> None:
    """Before the entry point runs, Python's defaults apply: SIGTERM ends the process (or, if our handler is
    already in place, the policy above). Either way: no traceback, nothing written."""
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    proc = subprocess.Popen([sys.executable, "-m", "gramstyle", *T, *FAST, "-o", str(out)], cwd=tmp_path,
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), err
    assert "Traceback" not in err
    assert listing(tmp_path) == ["out.png"] and out.read_bytes() == b"old"


def test_a_noted_interrupt_stops_the_run_before_any_output(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupt whose exception something swallowed is still acted on (entry.check) before writing."""
    monkeypatch.setattr(entry, "_received", signal.SIGINT)
    code, _, err = run_cli(capsys, *T, *FAST, "-o", str(tmp_path / "out.png"))
    assert code == 130 and err == "gramstyle: interrupted; nothing written\n"
    assert listing(tmp_path) == []


def test_the_entry_point_imports_no_torch_before_its_handlers() -> None:
    code = "import sys, gramstyle.apps.entry; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=60,
                          check=True)
    assert proc.stdout.strip() == "False"


# --- 7. settings of the Python API ------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,field", [
    ({"size": "big"}, "size"), ({"size": None}, "size"), ({"steps": "2"}, "steps"), ({"steps": 2.5}, "steps"),
    ({"colour": "red"}, "color_match"), ({"content_layers": "conv4_2"}, "content_layers"),
    ({"seed": 1.5, "init": "noise"}, "seed"), ({"alpha": 10**400}, "alpha"), ({"size": True}, "size"),
])
def test_api_wrong_type_or_value_names_the_setting(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(SettingsError) as exc:
        gramstyle.transfer(CONTENT, STYLE, **overrides)
    assert field in str(exc.value)
    assert exc.value.field in (field, *overrides)  # an unknown name: the field is the name given


def test_api_settings_validated_and_inputs() -> None:
    with pytest.raises(SettingsError, match="size") as exc:
        Settings(size="big").validated()  # type: ignore[arg-type]
    assert exc.value.field == "size"
    with pytest.raises(ImageError, match="int"):
        gramstyle.transfer(42, STYLE, size=64)  # type: ignore[arg-type]
    for style in (None, []):
        with pytest.raises(SettingsError, match="style image"):
            gramstyle.transfer(CONTENT, style, size=64)  # type: ignore[arg-type]


_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | st.binary(max_size=8)
    | st.complex_numbers() | st.fractions() | st.decimals() | st.sampled_from(
        ["conv4_2", "relu1_1", "auto", "64,128", "caffe", "noise", "avg", "lbfgs", "fp32", "chol", "none", "", " "]),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.dictionaries(st.text(max_size=4), inner,
                                                                                          max_size=3),
    max_leaves=8)
_NAMES = [f for f in Settings().to_dict()]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(_NAMES), value=_ANY)
def test_any_value_for_any_setting_validates_or_raises_settings_error(name: str, value: Any) -> None:
    try:
        checked = Settings().replace(**{name: value}).validated()
    except SettingsError as exc:
        assert "\n" not in str(exc)
        return
    assert checked.validated() == checked  # what validates is normal: validating again changes nothing


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.sampled_from(_NAMES) | st.text(max_size=8), _ANY, max_size=4) | _ANY)
def test_from_dict_validates_or_raises_settings_error(data: Any) -> None:
    with contextlib.suppress(SettingsError):
        Settings.from_dict(data)


# --- the small ones -------------------------------------------------------------------------------------------------

def test_negative_ratio_in_exponent_notation_reaches_its_check(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, *T, *FAST, "-o", str(tmp_path / "o.png"), "--ratio", "-1e-3")
    assert_one_line_error(code, err, ["--ratio", "> 0", "-0.001"])


@pytest.mark.parametrize("argv,names,not_named", [
    (["--style-scale", "1e-9"], ["--style-scale"], "--size"),
    (["--scales", "32,64"], ["--scales"], "--size"),
])
def test_size_errors_advise_the_setting_at_fault(argv: list[str], names: list[str], not_named: str,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, *T, *FAST, "-o", str(tmp_path / "o.png"), *argv)
    assert_one_line_error(code, err, names)
    assert not_named not in err
    assert listing(tmp_path) == []


def test_check_writable_turns_os_errors_into_one_line(tmp_path: Path) -> None:
    for path, reason in ((tmp_path / ("x" * 300), "File name too long"), (tmp_path / "a\x00b", "NUL")):
        with pytest.raises(ImageError, match=reason) as exc:
            files.check_writable(path)
        assert "\n" not in str(exc.value)
        assert isinstance(exc.value, GramstyleError)
