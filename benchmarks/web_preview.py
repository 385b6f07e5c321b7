"""The studio's preview cost and cancel latency, measured in one process through the real API (FastAPI's test
client, the real weights, the bundled Tübingen and The Starry Night).

- steps/s of a job with nobody watching, with a page-like client (it polls the job at 10 Hz and pulls the next
  preview only after the last one arrived and only when the run has moved on: what studio.js does), and with a
  client pulling previews back to back (the worst case). Runs alternate, so drift on a shared machine falls on
  every mode alike. The preview's JPEG is encoded in the client's request thread: on a machine whose cores are all
  busy with the run, that encoding takes CPU from the run; where a core is idle it costs the run nothing.
- the time to encode one preview (what a watched run can lose per step where the cores are all busy).
- the latency from Cancel (the POST) to the job's end (its state leaves "running"), against the step time.

    PYTHONPATH=src python benchmarks/web_preview.py --sizes 256 512 --steps 20 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

from fastapi.testclient import TestClient

from gramstyle import Session
from gramstyle.apps.web import create_app
from machine import cpu_description  # this folder is on sys.path when a script in it runs


def _submit(client: TestClient, size: int, steps: int) -> str:
    settings = {"size": size, "steps": steps}
    response = client.post("/api/jobs", data={"content_sample": "tubingen", "style_sample": "starry_night",
                                              "settings": json.dumps(settings)})
    response.raise_for_status()
    return str(response.json()["id"])


def _wait(client: TestClient, job_id: str) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.02)


def _watch(client: TestClient, job_id: str, mode: str, stop: threading.Event, pulled: list[int]) -> None:
    seen = -1
    while not stop.is_set():
        if mode == "page":
            job = client.get(f"/api/jobs/{job_id}").json()
            if job["state"] in ("done", "failed", "cancelled"):
                return
            if job["step"] < 1 or job["step"] <= seen:
                time.sleep(0.1)
                continue
        response = client.get(f"/api/jobs/{job_id}/preview.jpg")
        if response.status_code == 200:
            pulled.append(len(response.content))
            seen = int(response.headers["x-step"])
        else:
            time.sleep(0.01)


def one_run(client: TestClient, size: int, steps: int, mode: str) -> dict[str, Any]:
    job_id = _submit(client, size, steps)
    stop, pulled = threading.Event(), []  # type: ignore[var-annotated]
    watcher = None
    if mode != "none":
        watcher = threading.Thread(target=_watch, args=(client, job_id, mode, stop, pulled))
        watcher.start()
    job = _wait(client, job_id)
    stop.set()
    if watcher is not None:
        watcher.join()
    record = client.get(f"/api/jobs/{job_id}/record.json").json()
    return {"mode": mode, "size": size, "steps": record["steps"], "seconds": record["elapsed_seconds"],
            "steps_per_s": record["steps"] / record["elapsed_seconds"], "previews": len(pulled), "state": job["state"]}


def cancel_latency(client: TestClient, size: int, after: int) -> dict[str, Any]:
    job_id = _submit(client, size, 1000)
    while client.get(f"/api/jobs/{job_id}").json()["step"] < after:
        time.sleep(0.01)
    asked = time.perf_counter()
    client.post(f"/api/jobs/{job_id}/cancel")
    while client.get(f"/api/jobs/{job_id}").json()["state"] == "running":
        time.sleep(0.005)
    latency = time.perf_counter() - asked
    record = client.get(f"/api/jobs/{job_id}/record.json").json()
    return {"size": size, "latency_s": latency, "step_s": record["elapsed_seconds"] / record["steps"],
            "steps": record["steps"]}


def encode_ms(size: int, repeats: int = 20) -> float:
    """Median milliseconds to encode one preview (tensor -> 8-bit -> JPEG) of the bundled photo at `size`."""
    from gramstyle import assets, images
    from gramstyle.apps.web.jobs import _jpeg

    tensor = images.load_image(assets.TUBINGEN, size)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _jpeg(images.to_pil(tensor))
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["none", "page", "back-to-back"])
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}", file=sys.stderr)
    session = Session()
    with tempfile.TemporaryDirectory() as work:
        app = create_app(work, queue=2, session_factory=lambda: session)
        client = TestClient(app, base_url="http://127.0.0.1:8765")
        one_run(client, 64, 2, "none")  # builds the network
        rows = []
        for size in args.sizes:
            for _ in range(args.repeats):
                for mode in args.modes:
                    row = one_run(client, size, args.steps, mode)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            base = statistics.mean(r["steps_per_s"] for r in rows if r["size"] == size and r["mode"] == "none")
            for mode in args.modes:
                rate = statistics.mean(r["steps_per_s"] for r in rows if r["size"] == size and r["mode"] == mode)
                print(f"{size} px {mode:>12}: {rate:.3f} steps/s ({100 * (rate / base - 1):+.1f}% against none)",
                      flush=True)
            print(f"{size} px preview encoding: {encode_ms(size):.1f} ms (median of 20)", flush=True)
            cancel = [cancel_latency(client, size, 2) for _ in range(args.repeats)]
            for row in cancel:
                print(json.dumps(row), flush=True)
            print(f"{size} px cancel: {statistics.mean(r['latency_s'] for r in cancel):.3f} s from the POST to the "
                  f"job's end (a step takes {statistics.mean(r['step_s'] for r in cancel):.3f} s)", flush=True)
        app.state.jobs.close()


if __name__ == "__main__":
    main()
