"""The catalogue's metrics, recorded once in a real Ray actor, come out of Ray's metrics agent
under the Prometheus names the catalogue states and cluster/grafana_dashboard.json queries; and
the LLMServer replica and a TimedLLM client record theirs when a request goes through."""

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
    ray.init(num_cpus=2, object_store_memory=int(2e8), include_dashboard=False, log_to_driver=False,
             _metrics_export_port=port, _system_config={"metrics_report_interval_ms": 1000})
    yield port
    ray.shutdown()


def wait_for(port: int, expected: set[str]) -> set[str]:
    """The mfray series names exported once all of `expected` are there, or after WAIT_S."""
    deadline, seen = time.monotonic() + WAIT_S, set()
    while time.monotonic() < deadline and not expected <= seen:
        seen = exported_names(port)
        time.sleep(0.5)
    return seen


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
    seen = wait_for(metrics_port, expected)
    ray.kill(recorder)
    assert seen == expected, f"missing: {sorted(expected - seen)}; not in the catalogue: {sorted(seen - expected)}"
    queried = {name for _, expr in dashboard_targets() for name in metric_names(expr) if name.startswith("ray_mfray_")}
    assert queried <= seen, f"the dashboard queries mfray series Ray does not export: {sorted(queried - seen)}"


def test_replica_and_client_record_a_request(metrics_port):
    import ray
    from ray import serve

    from mfray.ray.serve_llm import deploy_llm_server

    deploy_llm_server(model_path="standin", http_port=free_port(), options={"ray_actor_options": {"num_cpus": 0}})

    @ray.remote(num_cpus=0)
    class Client:
        async def ask(self) -> int:
            from mfray.llm.base import SamplingParams
            from mfray.ray.metrics import TimedLLM
            from mfray.ray.serve_llm import ServeLLM

            self.llm = TimedLLM(ServeLLM.from_app(), "serve")  # kept: its histogram lives with it
            return len(await self.llm.generate(["a", "b"], SamplingParams(seed=1, max_new_tokens=4)))

    client = Client.remote()
    try:
        assert ray.get(client.ask.remote()) == 2
        expected = {"ray_mfray_llm_queue_depth", "ray_mfray_llm_batch_seconds_count", "ray_mfray_llm_request_seconds_count"}
        assert expected <= wait_for(metrics_port, expected)
    finally:
        ray.kill(client)
        serve.shutdown()
