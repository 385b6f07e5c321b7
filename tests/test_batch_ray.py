"""`gramstyle batch` on Ray (skipped without Ray): the same images as the local executor, a killed worker retried,
jobs spread over the two nodes of a simulated cluster. Few and small: Ray's start-up is slow on a small machine."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from gramstyle.apps.batch import LocalExecutor, RayExecutor, Summary, batch, expand  # noqa: E402
from gramstyle.assets import STARRY_NIGHT, THE_SCREAM, TUBINGEN  # noqa: E402
from gramstyle.config import Settings  # noqa: E402

pytestmark = pytest.mark.slow


def jobs(steps: int = 2) -> list[Any]:
    return expand([str(TUBINGEN)], [str(STARRY_NIGHT), str(THE_SCREAM)], Settings(size=64, steps=steps))


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_gives_the_local_executor_s_images_byte_for_byte(local_ray: None, tmp_path: Path) -> None:
    on_ray = batch(jobs(), tmp_path / "ray", executor=RayExecutor(cpus_per_job=1))
    local = batch(jobs(), tmp_path / "local", executor=LocalExecutor(jobs=1, threads=1))
    assert on_ray.ok and local.ok and len(on_ray.done) == 2
    ray_images = sorted((tmp_path / "ray").glob("*.png"))
    local_images = sorted((tmp_path / "local").glob("*.png"))
    assert [p.name for p in ray_images] == [p.name for p in local_images]
    for a, b in zip(ray_images, local_images, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert {o.pid for o in on_ray.outcomes.values()} != {os.getpid()}  # run by the actors, not the driver


def test_a_worker_killed_mid_job_is_retried_and_the_batch_completes(local_ray: None, tmp_path: Path) -> None:
    executor = RayExecutor(cpus_per_job=2)  # one actor: the kill surely hits the job under way
    result: dict[str, Summary] = {}
    runner = threading.Thread(target=lambda: result.setdefault("s", batch(jobs(steps=40), tmp_path / "out",
                                                                          executor=executor)))
    runner.start()
    deadline = time.monotonic() + 120
    while not executor.pids and time.monotonic() < deadline:
        time.sleep(0.05)
    assert executor.pids, "the actor did not start"
    time.sleep(1.0)  # into its first job (the weights load, then 40 steps: longer than this wait on a quiet CPU)
    killed = executor.pids[0]
    os.kill(killed, signal.SIGKILL)
    runner.join(300)
    summary = result["s"]
    assert summary.ok and len(summary.done) == 2
    assert killed not in {o.pid for o in summary.outcomes.values()}  # both finished on the restarted actor


def test_jobs_spread_over_both_nodes_of_a_two_node_cluster(tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        summary = batch(jobs(), tmp_path / "out", executor=RayExecutor(address=cluster.address, cpus_per_job=1))
        assert summary.ok
        nodes = {o.node for o in summary.outcomes.values()}
        assert len(nodes) == 2 and None not in nodes
        assert {n["NodeID"] for n in ray.nodes() if n["Alive"]} >= nodes
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def test_content_and_texture_jobs_run_on_ray_as_locally(local_ray: None, tmp_path: Path) -> None:
    from gramstyle.apps.figures import panels

    jobs = [p.job for p in panels(size=64, steps=2) if p.id in ("fig1_content_conv2_1", "fig1_style_2")]
    local = batch(jobs, tmp_path / "local", executor=LocalExecutor(jobs=1, threads=1), sheet=False)
    on_ray = batch(jobs, tmp_path / "ray", executor=RayExecutor(cpus_per_job=1), sheet=False)
    assert local.ok and on_ray.ok and len(on_ray.done) == 2
    names = [p.name for p in (tmp_path / "local").glob("*.png")]
    assert len(names) == 2
    for name in names:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes()
