"""The studio's HTTP API (docs/api.md) through FastAPI's test client, with the real weights at 64 px."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient
from PIL import Image

from gramstyle import Session, assets
from gramstyle.apps.web import create_app

BASE = "http://127.0.0.1:8765"
SMALL = {"size": 64, "steps": 2}
_SESSION = Session()


def _shared() -> Session:
    return _SESSION


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    apps: list[Any] = []

    def build(workdir: Path | None = None, **options: Any) -> TestClient:
        options.setdefault("session_factory", _shared)
        app = create_app(workdir or tmp_path / "work", **options)
        apps.append(app)
        return TestClient(app, base_url=BASE)

    yield build
    for app in apps:
        app.state.jobs.close()


def _png(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _submit(client: TestClient, settings: dict[str, Any] | None = None, **extra: Any) -> Any:
    data = {"content_sample": "tubingen", "style_sample": "starry_night",
            "settings": json.dumps(SMALL if settings is None else settings), **extra.pop("data", {})}
    return client.post("/api/jobs", data=data, **extra)


def _wait(client: TestClient, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 120) -> Any:
    end = time.time() + timeout
    while time.time() < end:
        job = client.get(f"/api/jobs/{job_id}").json()
        if until(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached the state wanted: {job}")


def _finished(job: dict[str, Any]) -> bool:
    return job["state"] in ("done", "failed", "cancelled")


# --- the page and the form ---------------------------------------------------------------------------------

def test_page_form_and_samples(make: Callable[..., TestClient]) -> None:
    client = make()
    assert "gramstyle studio" in client.get("/").text
    assert client.get("/static/studio.js").status_code == 200
    form = client.get("/api/settings").json()
    fields = {f["name"]: f for f in form["fields"]}
    assert fields["preserve_color"]["label"] == "preserve colour"
    assert fields["preserve_color"]["choices"] == ["none", "luminance", "histogram"]
    assert {name for name, f in fields.items() if f["basic"]} >= {"size", "steps", "time_limit", "style_scale",
                                                                  "init", "style_blend", "preserve_color"}
    assert "device" not in fields and "content_mask" not in fields  # the server decides these
    assert "{" not in fields["scales"]["help"] and "--" not in fields["scales"]["help"]
    assert form["ratio"]["default"] == pytest.approx(1e-3)
    assert client.get("/api/samples/starry_night.jpg").content == assets.STARRY_NIGHT.read_bytes()
    assert client.get("/api/samples/..%2Fconfig.jpg").status_code == 404


# --- errors --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "field", "words"), [
    ('{"size": 3}', "size", "size must be at least 32"),
    ('{"preserve_color": "blue"}', "preserve_color", "preserve colour must be one of"),
    ('{"style_scale": 0.5, "style_size": 64}', "style_scale", "give style size or style scale"),
    ('{"steps": "many"}', "steps", "steps: expected an integer"),
    ('{"sizes": 64}', "sizes", "unknown setting 'sizes'"),
    ('{"init": "/etc/passwd"}', "init", "start from must be one of"),
    ('{"weights": "/tmp/evil.pth"}', "weights", "weights must be one of"),
    ('{"device": "cuda:7"}', "device", "not available in the studio"),
    ('{"ratio": -1}', "ratio", "style strength"),
    ('{"size": 64', "settings", "not valid JSON"),
    ('[1]', None, "must be a JSON object"),
])
def test_bad_settings_are_400_in_the_forms_words(make: Callable[..., TestClient], settings: str,
                                                  field: str | None, words: str) -> None:
    response = make().post("/api/jobs", data={"content_sample": "tubingen", "style_sample": "starry_night",
                                              "settings": settings})
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == field and words in body["error"], body
    assert "--" not in body["error"] and "Traceback" not in body["error"]


def test_bad_images_are_400_naming_the_clients_file(make: Callable[..., TestClient]) -> None:
    client = make()
    jpeg = assets.TUBINGEN.read_bytes()
    cases = [
        ("notes.jpg", b"just some text\n", "notes.jpg: not an image file"),
        ("empty.png", b"", "empty.png: empty file"),
        ("cut.jpg", jpeg[: len(jpeg) // 3], "cut.jpg: truncated or corrupt"),
    ]
    for name, data, words in cases:
        response = client.post("/api/jobs", files={"content": (name, data, "image/jpeg")},
                               data={"style_sample": "starry_night", "settings": json.dumps(SMALL)})
        assert response.status_code == 400, name
        assert response.json()["field"] == "content" and response.json()["error"].startswith(words), response.json()
        assert "/jobs/" not in response.json()["error"]  # never the server's path
    big = client.post("/api/jobs", files={"content": ("small.png", _png()), "style": ("big.png", _png((300, 300)))},
                      data={"settings": json.dumps({**SMALL, "max_pixels": 50000})})
    assert big.status_code == 400 and big.json()["field"] == "style"
    assert "big.png: 300x300 = 90000 pixels is more than the limit of 50000 (max pixels)" in big.json()["error"]
    missing = client.post("/api/jobs", data={"content_sample": "tubingen", "settings": "{}"})
    assert missing.status_code == 400 and missing.json()["field"] == "style"
    assert not list((Path(client.app.state.jobs.folder)).iterdir())  # refused uploads leave nothing behind


def test_upload_limit_413_before_and_while_reading(make: Callable[..., TestClient]) -> None:
    client = make(max_upload_mb=0.05)
    blob = b"\xff" * 80_000
    declared = client.post("/api/jobs", files={"content": ("a.jpg", blob)}, data={"settings": "{}"})
    assert declared.status_code == 413 and "limit" in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is applied while reading
        for _ in range(20):
            yield b"x" * 8192

    streamed = client.post("/api/jobs", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413


def test_unknown_jobs_and_routes_are_404(make: Callable[..., TestClient]) -> None:
    client = make()
    for path in ("/api/jobs/nope", "/api/jobs/nope/result.png", "/api/jobs/nope/preview.jpg",
                 "/api/jobs/nope/record.json", "/api/jobs/nope/events", "/api/jobs/..%2F..%2Fetc"):
        response = client.get(path)
        assert response.status_code == 404 and "error" in response.json(), path
    assert client.post("/api/jobs/nope/cancel").status_code == 404
    assert client.delete("/api/jobs/nope").status_code == 404


# --- safety ----------------------------------------------------------------------------------------------------

def test_foreign_host_and_origin_are_refused(make: Callable[..., TestClient]) -> None:
    client = make()
    assert client.get("/api/jobs", headers={"Host": "evil.example:8765"}).status_code == 403
    assert client.get("/api/jobs", headers={"Host": "localhost:8765"}).status_code == 200
    assert client.get("/api/jobs", headers={"Host": "[::1]:8765"}).status_code == 200
    foreign = _submit(client, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "another site" in foreign.json()["error"]
    assert client.delete("/api/jobs/x", headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/api/jobs/x/cancel", headers={"Origin": "null"}).status_code == 403
    # reading is not an action; the page's own origin may act
    assert client.get("/api/jobs", headers={"Origin": "http://evil.example"}).status_code == 200
    assert client.post("/api/jobs/x/cancel", headers={"Origin": BASE}).status_code == 404


def test_token_by_header_or_cookie_from_the_url(make: Callable[..., TestClient]) -> None:
    client = make(token="s3cret", host="0.0.0.0")
    client.follow_redirects = False
    assert client.get("/api/jobs").status_code == 401
    assert client.get("/api/jobs", headers={"X-Gramstyle-Token": "wrong"}).status_code == 401
    assert client.get("/api/jobs", headers={"X-Gramstyle-Token": "s3cret"}).status_code == 200
    landing = client.get("/?token=s3cret")
    assert landing.status_code == 303 and landing.headers["location"] == "/"
    assert "HttpOnly" in landing.headers["set-cookie"] and "SameSite=Strict" in landing.headers["set-cookie"]
    assert client.get("/api/jobs").status_code == 200  # the cookie now


# --- jobs -------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_job_from_start_to_result_continue_and_delete(make: Callable[..., TestClient], tmp_path: Path) -> None:
    client = make()
    response = client.post("/api/jobs", files={"content": ("../../../etc/passwd.png", _png()),
                                                "style": ("C:\\Windows\\a{b}.png", _png(color=(20, 40, 220)))},
                           data={"settings": json.dumps({**SMALL, "ratio": 1e-4})})
    assert response.status_code == 201, response.json()
    job_id = response.json()["id"]
    assert response.headers["location"] == f"/api/jobs/{job_id}"
    events: list[str] = []
    with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [line for line in stream.iter_lines() if line.startswith("event:")]
    assert events[-1] == "event: end" and "event: progress" in events
    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["state"] == "done" and job["step"] == 2 and job["steps"] == 2 and job["has_result"]
    assert job["settings"]["beta"] == pytest.approx(1e4) and job["losses"]["total"] > 0 and job["plot"]
    assert job["inputs"] == {"content": "passwd.png", "styles": ["a{b}.png"]}
    folder = Path(client.app.state.jobs.folder) / job_id
    assert sorted(p.name for p in folder.iterdir()) == ["content.image", "job.json", "result.png",
                                                        "result.png.json", "style-0.image"]
    result = client.get(f"/api/jobs/{job_id}/result.png")
    assert result.headers["content-type"] == "image/png" and Image.open(io.BytesIO(result.content)).size == (64, 48)
    assert client.get(f"/api/jobs/{job_id}/preview.jpg").headers["content-type"] == "image/jpeg"
    record = client.get(f"/api/jobs/{job_id}/record.json").json()
    assert record["steps"] == 2 and record["job"] == job_id and record["settings"]["size"] == 64
    assert [j["id"] for j in client.get("/api/jobs").json()["jobs"]] == [job_id]

    again = client.post("/api/jobs", data={"continue_from": job_id, "settings": json.dumps(SMALL)})
    assert again.status_code == 201, again.json()
    second = _wait(client, again.json()["id"], _finished)
    assert second["state"] == "done" and second["inputs"]["continue_from"] == job_id
    assert second["settings"]["init"].endswith("init.png") and second["inputs"]["styles"] == ["a{b}.png"]

    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert client.get(f"/api/jobs/{job_id}").status_code == 404 and not folder.exists()
    gone = client.post("/api/jobs", data={"continue_from": job_id, "settings": "{}"})
    assert gone.status_code == 400 and gone.json()["field"] == "continue_from"


@pytest.mark.slow
def test_cancel_within_a_step_and_a_failed_job_leaves_the_server_up(make: Callable[..., TestClient]) -> None:
    client = make()
    job_id = _submit(client, {"size": 64, "steps": 500}).json()["id"]
    running = _wait(client, job_id, lambda j: j["step"] >= 1)
    assert running["state"] == "running" and running["eta"] is not None
    preview = client.get(f"/api/jobs/{job_id}/preview.jpg")
    assert preview.status_code == 200 and int(preview.headers["x-step"]) >= 1
    asked = time.time()
    client.post(f"/api/jobs/{job_id}/cancel")
    job = _wait(client, job_id, _finished)
    latency = time.time() - asked
    assert job["state"] == "cancelled" and job["stop_reason"] == "cancelled" and job["has_result"]
    assert job["step"] < 500 and latency < 30
    # a content photo too small for the network: the job fails with words, the server goes on
    small = client.post("/api/jobs", files={"content": ("thin.png", _png((400, 4)))},
                        data={"style_sample": "starry_night", "settings": json.dumps(SMALL)})
    failed = _wait(client, small.json()["id"], _finished)
    assert failed["state"] == "failed" and failed["error"].startswith("thin.png: 64x1 after resizing")
    assert "shorter side" in failed["error"] and "--" not in failed["error"] and "/jobs/" not in failed["error"]
    assert client.get("/api/jobs").status_code == 200


def test_full_queue_is_429_and_a_queued_job_cancels_at_once(make: Callable[..., TestClient]) -> None:
    gate = threading.Event()

    def slow_start() -> Session:  # the worker holds the first job while the queue fills
        gate.wait(60)
        return _SESSION

    client = make(queue=1, session_factory=slow_start)
    first = _submit(client).json()["id"]
    _wait(client, first, lambda j: j["state"] == "running")
    second = _submit(client)
    assert second.status_code == 201
    full = _submit(client)
    assert full.status_code == 429 and int(full.headers["retry-after"]) >= 1 and "queue is full" in full.json()["error"]
    cancelled = client.post(f"/api/jobs/{second.json()['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    client.post(f"/api/jobs/{first}/cancel")
    gate.set()
    assert _wait(client, first, _finished)["state"] == "cancelled"
    assert len(client.get("/api/jobs").json()["jobs"]) == 2


@pytest.mark.slow
def test_a_restart_keeps_the_history(make: Callable[..., TestClient], tmp_path: Path) -> None:
    work = tmp_path / "studio"
    first = make(work)
    job_id = _submit(first).json()["id"]
    assert _wait(first, job_id, _finished)["state"] == "done"
    first.app.state.jobs.close()
    # a job that was running when the server stopped
    stale = work / "jobs" / "20200101-000000-deadbeef"
    stale.mkdir()
    saved = json.loads((work / "jobs" / job_id / "job.json").read_text())
    (stale / "job.json").write_text(json.dumps({**saved, "state": "running"}))
    (work / "jobs" / "not-a-job").mkdir()

    second = make(work)
    jobs = {j["id"]: j for j in second.get("/api/jobs").json()["jobs"]}
    assert set(jobs) == {job_id, stale.name}
    assert jobs[job_id]["state"] == "done" and jobs[job_id]["has_result"] and jobs[job_id]["losses"]["total"] > 0
    assert jobs[stale.name]["state"] == "failed" and "stopped" in jobs[stale.name]["error"]
    assert second.get(f"/api/jobs/{job_id}/result.png").status_code == 200
    assert second.get(f"/api/jobs/{job_id}/record.json").json()["job"] == job_id
    assert second.get(f"/api/jobs/{job_id}/preview.jpg").headers["content-type"] == "image/jpeg"


# --- the command -------------------------------------------------------------------------------------------------

def test_serve_binds_loopback_and_needs_a_token_elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    from gramstyle.apps import cli

    served: list[dict[str, Any]] = []

    def fake_run(app: Any, **options: Any) -> None:  # the app is built; the server is not started
        served.append({"app": app, **options})
        app.state.jobs.close()

    monkeypatch.setattr(uvicorn, "run", fake_run)
    assert cli.main(["serve", "--workdir", str(tmp_path / "a")]) == 0
    assert served[-1]["host"] == "127.0.0.1" and served[-1]["port"] == 8765
    local = capsys.readouterr().err
    assert "http://127.0.0.1:8765/ " in local and "warning" not in local and "token" not in local
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "9000", "--queue", "2", "--workdir",
                     str(tmp_path / "b")]) == 0
    shared = capsys.readouterr().err
    assert "warning" in shared and "http://0.0.0.0:9000/?token=" in shared
    token = shared.split("?token=")[1].split()[0]
    client = TestClient(served[-1]["app"], base_url="http://192.168.1.5:9000")
    assert client.get("/api/jobs").status_code == 401
    assert client.get("/api/jobs", headers={"X-Gramstyle-Token": token}).status_code == 200
    assert cli.main(["serve", "--queue", "0", "--workdir", str(tmp_path / "c")]) == 2
    assert "--queue" in capsys.readouterr().err
