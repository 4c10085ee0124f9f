"""The catalogue's metrics, recorded once in a real Ray actor, come out of Ray's metrics agent
under the Prometheus names the catalogue states and cluster/grafana_dashboard.json queries."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest

from mfray.ray.metrics import CATALOGUE
from tests.unit.test_dashboard import dashboard_targets, metric_names

WAIT_S = 45  # bounded: the agent exports within a few report intervals (1 s here)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def metrics_port():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    port = free_port()
    # A 1 s report interval (Ray's default is several seconds) keeps the wait short.
    ray.init(num_cpus=1, object_store_memory=int(2e8), include_dashboard=False, log_to_driver=False,
             _metrics_export_port=port, _system_config={"metrics_report_interval_ms": 1000})
    yield port
    ray.shutdown()


def exported_names(port: int) -> set[str]:
    """Series names in the agent's Prometheus text that belong to mfray."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line.startswith("ray_mfray_")}


def test_catalogue_names_match_what_ray_exports(metrics_port):
    import ray

    @ray.remote(num_cpus=0)
    class Recorder:
        def record(self) -> None:
            from mfray.ray.metrics import create

            self.kept = []  # alive until the agent has scraped them
            for s in CATALOGUE:
                m = create(s.name)
                tags = {k: "x" for k in s.tag_keys}
                if s.kind == "counter":
                    m.inc(1, tags=tags)
                elif s.kind == "gauge":
                    m.set(1, tags=tags)
                else:
                    m.observe(0.2, tags=tags)
                self.kept.append(m)

    recorder = Recorder.remote()
    ray.get(recorder.record.remote())
    expected = {name for s in CATALOGUE for name in s.prometheus_names()}
    deadline, seen = time.monotonic() + WAIT_S, set()
    while time.monotonic() < deadline and not expected <= seen:
        seen = exported_names(metrics_port)
        time.sleep(0.5)
    ray.kill(recorder)
    assert seen == expected, f"missing: {sorted(expected - seen)}; not in the catalogue: {sorted(seen - expected)}"
    queried = {name for _, expr in dashboard_targets() for name in metric_names(expr) if name.startswith("ray_mfray_")}
    assert queried <= seen, f"the dashboard queries mfray series Ray does not export: {sorted(queried - seen)}"
