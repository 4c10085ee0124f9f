"""The simulation endpoint as a Ray Serve application on a real local Ray: the LLM app (the stand-in
behind the project's interface: this checks orchestration, not text) and the endpoint app, reached
over HTTP on 127.0.0.1 through Serve's proxy. Each live simulation is an event actor; it is gone
once the simulation ends."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from mfray.data import demo_event_path
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def endpoint_url(tmp_path_factory):
    import ray
    from ray import serve

    from mfray.ray.serve_llm import build_llm_app
    from mfray.ray.sim_endpoint import app_builder

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=int(1e9), include_dashboard=False, log_to_driver=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_llm_app(model_path="standin", model_name="standin", max_prompt_tokens=None,
                                options={"ray_actor_options": {"num_cpus": 0.5}}), name="mfray-llm", route_prefix="/llm")
        store = tmp_path_factory.mktemp("endpoint")
        serve.run(app_builder({"events": [str(demo_event_path().parent)], "store": str(store), "max_live": 2,
                               "backend": {"llm": "serve", "serve_app": "mfray-llm"}}),
                  name="mfray-endpoint", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def _event_actors() -> int:
    import ray

    from mfray.ray.sim_endpoint import ACTOR_PREFIX

    return sum(a["name"].startswith(ACTOR_PREFIX) for a in ray.util.list_named_actors(all_namespaces=True))


def test_simulations_run_as_event_actors_behind_serve(endpoint_url):
    with httpx.Client(base_url=endpoint_url, timeout=60) as client:
        assert client.get("/health").json()["status"] == "ok"
        body = {"event_id": "demo/demo_event", "horizon": 96, "sim_start": 48, "agents_per_step": 16, "start": False}
        sim = client.post("/api/simulations", json=body)
        assert sim.status_code == 201, sim.text
        sim_id = sim.json()["id"]
        assert _event_actors() == 1
        client.post(f"/api/simulations/{sim_id}/resume", json={"steps": 4})
        deadline = time.monotonic() + 60
        while client.get(f"/api/simulations/{sim_id}").json()["status"] != "paused" or \
                client.get(f"/api/simulations/{sim_id}").json()["steps_done"] < 4:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        planned = client.post(f"/api/simulations/{sim_id}/intervene", json={"posts": ["Officials: fake."]})
        assert planned.json()["interventions"] == [{"step": 4, "posts": ["Officials: fake."], "agents": None}]
        client.post(f"/api/simulations/{sim_id}/resume")
        with client.stream("GET", f"/api/simulations/{sim_id}/stream") as r:
            messages = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
        assert messages[-1]["status"] == "done" and sum(m["type"] == "step" for m in messages) == 6
        records = client.get(f"/api/simulations/{sim_id}/trajectory").json()["records"]
        assert [(r["step"], r["simulated_text"]) for r in records if r["intervention"]] == [(4, "Officials: fake.")]
        # A what-if from step 2 runs in an actor of its own; ended simulations hold none.
        fork = client.post(f"/api/simulations/{sim_id}/fork", json={"step": 2}).json()
        with client.stream("GET", f"/api/simulations/{fork['id']}/stream") as r:
            assert [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")][-1]["status"] == "done"
        forked = client.get(f"/api/simulations/{fork['id']}/trajectory").json()["records"]
        assert forked[:32] == records[:32] and not any(r["intervention"] for r in forked)
        deadline = time.monotonic() + 30
        while _event_actors():
            assert time.monotonic() < deadline, "event actors of ended simulations still alive"
            time.sleep(0.2)
