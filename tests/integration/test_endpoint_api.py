"""The simulation endpoint over real HTTP on 127.0.0.1 (uvicorn in a thread, httpx): the whole life of
a simulation, every refusal with its status code, uploads, the token, a restart, and a
property-based pass (hypothesis) over the request schemas that must find no 5xx. The LLM is the
stand-in behind the project's interface: these tests are about the endpoint's bookkeeping and its
validation, not about what a model writes."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfray.cli import main as cli
from mfray.data import demo_event_path, load_demo_event, write_parquet
from mfray.endpoint.local import build_local_endpoint
from mfray.endpoint.schemas import MAX_BODY_BYTES
from mfray.http_common import ServerThread

pytestmark = pytest.mark.integration
EVENT = "demo/demo_event"
SMALL = {"event_id": EVENT, "horizon": 96, "sim_start": 48, "agents_per_step": 16}


def endpoint(store, **kw):
    return build_local_endpoint("standin", [str(demo_event_path().parent)], str(store), **kw)


def finished(client: httpx.Client, sim_id: str) -> list[dict]:
    """Every stream message of a simulation, read until it ends."""
    out = []
    with client.stream("GET", f"/api/simulations/{sim_id}/stream") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
    return out


def wait_status(client: httpx.Client, sim_id: str, status: str, timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while (info := client.get(f"/api/simulations/{sim_id}").json())["status"] != status:
        assert time.monotonic() < deadline, f"still {info['status']}, waited for {status}"
        time.sleep(0.02)
    return info


@pytest.fixture
def served(tmp_path):
    with ServerThread(endpoint(tmp_path / "store")) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_a_simulation_streams_its_steps_and_serves_trajectory_metrics_and_plot(served):
    r = served.post("/api/simulations", json=SMALL)
    assert r.status_code == 201
    sim = r.json()
    assert sim["steps"] == 6 and sim["event_id"] == "demo_millbrook_water"
    messages = finished(served, sim["id"])
    steps = [m for m in messages if m["type"] == "step"]
    # mf runs every step (the mean field is summarised after warm-up steps too), in order.
    assert [m["step"] for m in steps] == list(range(6)) and messages[-1] == {"type": "status", "status": "done", "error": None}
    warm, simulated = steps[0], steps[-1]
    assert warm["shares"]["attitude"]["sim"] is None and abs(sum(warm["shares"]["attitude"]["real"]) - 1) < 1e-6
    assert all(not p["warmup"] and p["sim"] for p in simulated["posts"]) and len(simulated["posts"]) == 16
    # Reconnecting with Last-Event-ID resumes after that message.
    with served.stream("GET", f"/api/simulations/{sim['id']}/stream", headers={"Last-Event-ID": "3"}) as r:
        first = next(line for line in r.iter_lines() if line.startswith("id: "))
    assert first == "id: 4"

    page = served.get(f"/api/simulations/{sim['id']}/trajectory", params={"offset": 90, "limit": 10}).json()
    assert page["total"] == 96 and [r["agent_index"] for r in page["records"]] == list(range(90, 96))
    assert "policy_prompt" not in page["records"][0]
    metrics = served.get(f"/api/simulations/{sim['id']}/metrics").json()
    assert [d["dimension"] for d in metrics["dimensions"]][:2] == ["rumor", "sentiment"] and metrics["annotator"]
    assert all(d["agents"] > 0 for d in metrics["dimensions"])  # the demo event records agents 48.. to compare
    png = served.get(f"/api/simulations/{sim['id']}/plot.png", params={"dimension": "stance"})
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_pause_step_intervene_signal_and_fork_land_where_asked(served):
    sim = served.post("/api/simulations", json={**SMALL, "start": False}).json()
    assert sim["status"] == "paused"
    served.post(f"/api/simulations/{sim['id']}/resume", json={"steps": 4})
    wait_status(served, sim["id"], "paused")
    info = served.post(f"/api/simulations/{sim['id']}/intervene", json={"posts": ["Officials: fake."], "agents": [2]}).json()
    assert info["step"] == 4 and info["interventions"] == [{"step": 4, "posts": ["Officials: fake."], "agents": [2]}]
    served.post(f"/api/simulations/{sim['id']}/signal", json={"text": "Police statement", "step": 5})
    past = served.post(f"/api/simulations/{sim['id']}/intervene", json={"posts": ["late"], "step": 1})
    assert past.status_code == 422 and "already simulated" in past.json()["error"]["message"]
    served.post(f"/api/simulations/{sim['id']}/resume")
    wait_status(served, sim["id"], "done")
    records = served.get(f"/api/simulations/{sim['id']}/trajectory").json()["records"]
    assert [(r["agent_index"], r["simulated_text"]) for r in records if r["intervention"]] == [(66, "Officials: fake.")]
    assert {r["step"] for r in records if r["signal"] == "Police statement"} == {5}

    # A fork from step 4 carries the plan made while the run stood at step 4, and repeats the run;
    # a fork from step 3 predates the plan: no inserted post, no signal, the same past.
    same = served.post(f"/api/simulations/{sim['id']}/fork", json={"step": 4}).json()
    assert same["parent"] == {"id": sim["id"], "step": 4} and same["records"] == 64
    assert same["interventions"] == [{"step": 4, "posts": ["Officials: fake."], "agents": [2]}]
    wait_status(served, same["id"], "done")
    assert served.get(f"/api/simulations/{same['id']}/trajectory").json()["records"] == records
    before = served.post(f"/api/simulations/{sim['id']}/fork", json={"step": 3}).json()
    assert before["interventions"] == [] and before["signals"] == []
    wait_status(served, before["id"], "done")
    forked = served.get(f"/api/simulations/{before['id']}/trajectory").json()["records"]
    assert forked[:48] == records[:48] and not any(r["intervention"] or r["signal"] for r in forked)
    assert served.post(f"/api/simulations/{sim['id']}/fork", json={"step": 99}).status_code == 422


def test_refusals_are_clear_4xx(tmp_path):
    with ServerThread(endpoint(tmp_path / "store", max_live=1)) as server, httpx.Client(base_url=server.url) as client:
        first = client.post("/api/simulations", json={**SMALL, "start": False})
        assert first.status_code == 201
        busy = client.post("/api/simulations", json=SMALL)
        assert busy.status_code == 429 and busy.headers["retry-after"] and "limit is 1" in busy.json()["error"]["message"]
        client.post(f"/api/simulations/{first.json()['id']}/cancel")
        again = client.post(f"/api/simulations/{first.json()['id']}/resume")
        assert again.status_code == 409 and "fork it" in again.json()["error"]["message"]
        cases = [
            ({"event_id": "demo/nope"}, 404, "no stored event"),
            ({"event_id": "../../etc/passwd"}, 404, "no stored event"),
            ({}, 422, "exactly one of event_id"),
            ({**SMALL, "horizon": 0}, 422, "horizon"),
            ({**SMALL, "horizon": "96"}, 422, "horizon"),
            ({**SMALL, "method": "magic"}, 422, "method"),
            ({**SMALL, "sim_start": 40, "agents_per_step": 16, "typo": 1}, 422, "typo"),
            ({**SMALL, "method": "sft"}, 422, "needs the adapter"),
            ({"upload": {"filename": "x.txt", "content": "{}"}}, 422, "must end in"),
            ({"upload": {"filename": "mine.json", "content": "{not json"}}, 422, "mine.json"),
            ({"upload": {"filename": "e.parquet", "content": "%%%", "encoding": "base64"}}, 422, "base64"),
        ]
        for body, code, words in cases:
            r = client.post("/api/simulations", json=body)
            assert (r.status_code, words in r.json()["error"]["message"]) == (code, True), (body, r.text)
            assert str(tmp_path) not in r.text  # no server path in any answer
        assert client.get("/api/simulations/0123456789ab").status_code == 404
        assert client.get("/api/simulations/..%2F..%2Fx").status_code == 404
        assert client.get(f"/api/simulations/{first.json()['id']}/plot.png", params={"dimension": "x"}).status_code == 422
        assert not any((tmp_path / "store" / "uploads").iterdir())  # refused uploads are not kept
        mdp = client.post("/api/simulations", json={**SMALL, "method": "mfmdp", "sim_start": 0})
        assert mdp.status_code == 422 and "warm-up" in mdp.json()["error"]["message"]
        # mfmdp's saved step starts grow with the square of the steps: capped in steps, not agents
        long_steps = client.post("/api/simulations", json={**SMALL, "method": "mfmdp", "horizon": 5000, "agents_per_step": 1})
        assert long_steps.status_code == 422 and "limited to 512 steps" in long_steps.json()["error"]["message"]
        big = client.post("/api/simulations", content=b"x" * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"})
        assert big.status_code == 413
        long_post = {"posts": ["x" * 2001]}
        assert client.post(f"/api/simulations/{first.json()['id']}/intervene", json=long_post).status_code == 422


def test_uploads_in_every_format_simulate(served, tmp_path):
    event = load_demo_event()
    parquet = tmp_path / "e.parquet"
    write_parquet([event], parquet)
    bodies = [
        {"filename": "demo.jsonl", "content": demo_event_path().read_text()},
        {"filename": "demo.parquet", "content": base64.b64encode(parquet.read_bytes()).decode(), "encoding": "base64"},
    ]
    for upload in bodies:
        r = served.post("/api/simulations", json={"upload": upload, "horizon": 64, "sim_start": 48})
        assert r.status_code == 201, r.text
        assert r.json()["origin"] == {"upload": upload["filename"], "pick": None}  # no server file name
        assert finished(served, r.json()["id"])[-1]["status"] == "done"


def test_finished_simulations_are_found_again_after_a_restart_and_fork(tmp_path):
    store = tmp_path / "store"
    with ServerThread(endpoint(store)) as server, httpx.Client(base_url=server.url) as client:
        done = client.post("/api/simulations", json=SMALL).json()["id"]
        finished(client, done)
        paused = client.post("/api/simulations", json={**SMALL, "start": False}).json()["id"]
        before = client.get(f"/api/simulations/{done}/trajectory").json()
    with ServerThread(endpoint(store)) as server, httpx.Client(base_url=server.url) as client:
        listed = {s["id"]: s["status"] for s in client.get("/api/simulations").json()["simulations"]}
        assert listed == {done: "done", paused: "cancelled"}  # live at shutdown: ended as cancelled, kept
        assert client.get(f"/api/simulations/{done}/trajectory").json() == before
        fork = client.post(f"/api/simulations/{done}/fork", json={"step": 3}).json()
        finished(client, fork["id"])
        again = client.get(f"/api/simulations/{fork['id']}/trajectory").json()
        assert again["records"] == before["records"]  # no change planned: the same seeds, the same run


def test_a_simulation_whose_server_died_is_found_interrupted(tmp_path):
    store = tmp_path / "store"
    with ServerThread(endpoint(store)) as first, httpx.Client(base_url=first.url) as a:
        live = a.post("/api/simulations", json={**SMALL, "start": False}).json()["id"]
        # A second server on the same store while the first still holds it live: what a restart
        # after a crash finds (the first never ended it).
        with ServerThread(endpoint(store)) as second, httpx.Client(base_url=second.url, timeout=10) as b:
            assert b.get(f"/api/simulations/{live}").json()["status"] == "interrupted"
            assert finished(b, live)[-1]["status"] == "interrupted"  # the stream ends: nothing will come
            assert b.post(f"/api/simulations/{live}/cancel").status_code == 409
            fork = b.post(f"/api/simulations/{live}/fork", json={"step": 0})
            assert fork.status_code == 201 and finished(b, fork.json()["id"])[-1]["status"] == "done"


def test_a_token_guards_the_api_and_a_public_bind_needs_one(tmp_path, monkeypatch, capsys):
    with ServerThread(endpoint(tmp_path / "store", token="s3cret")) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/health").json()["auth"] is True and client.get("/").status_code == 200
        assert client.get("/api/events").status_code == 401
        assert client.get("/api/events", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get("/api/events", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert cli(["endpoint", "--host", "0.0.0.0", "--model", "standin"]) == 2
    assert "without a token" in capsys.readouterr().err
    monkeypatch.delenv("MFRAY_TEST_TOKEN", raising=False)
    assert cli(["endpoint", "--host", "0.0.0.0", "--token-env", "MFRAY_TEST_TOKEN", "--model", "standin"]) == 2


# ---- property-based: no request body or parameter makes the server fail ------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
                    max_leaves=12)
FIELDS = {
    "": ["event_id", "upload", "pick", "method", "seed", "horizon", "sim_start", "agents_per_step", "prompt_style",
         "policy", "mean_field", "start", "steps"],
    "/intervene": ["posts", "agents", "step"], "/signal": ["text", "step"], "/fork": ["step", "start", "steps"],
    "/resume": ["steps"], "/pause": [], "/cancel": [],
}


@st.composite
def request_bodies(draw):
    """A route and a body: valid field names with values of any JSON type (the schema's edges),
    or any JSON at all."""
    route = draw(st.sampled_from(sorted(FIELDS)))
    fields = FIELDS[route]
    if fields and draw(st.booleans()):
        body = draw(st.fixed_dictionaries({}, optional={f: JSON | st.integers(-5, 200) for f in fields}))
        if route == "" and draw(st.booleans()):
            body["event_id"] = EVENT
    else:
        body = draw(JSON)
    return route, body


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    store = tmp_path_factory.mktemp("fuzz")
    with ServerThread(endpoint(store, max_live=64)) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        sim = client.post("/api/simulations", json={**SMALL, "start": False}).json()["id"]
        yield client, sim


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request_bodies(), st.sampled_from(["live", "unknown"]))
def test_no_request_body_makes_a_5xx(fuzz_server, case, which):
    client, sim = fuzz_server
    route, body = case
    target = "/api/simulations" if route == "" else f"/api/simulations/{sim if which == 'live' else 'ffffffffffff'}{route}"
    r = client.post(target, json=body)
    assert r.status_code < 500, (target, body, r.text)
    if r.status_code == 201 and route == "":
        client.post(f"/api/simulations/{r.json()['id']}/cancel")  # keep the live count bounded


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["trajectory", "metrics", "plot.png", "stream"]),
       st.dictionaries(st.sampled_from(["offset", "limit", "prompts", "dimension", "compare", "since"]),
                       st.text(max_size=8) | st.integers(-3, 5000).map(str), max_size=3))
def test_no_query_makes_a_5xx(fuzz_server, route, params):
    client, sim = fuzz_server
    if route == "stream":  # a finished stream ends; a live one would not, so read only its head
        with client.stream("GET", f"/api/simulations/{sim}/{route}", params=params) as r:
            assert r.status_code < 500
        return
    r = client.get(f"/api/simulations/{sim}/{route}", params=params)
    assert r.status_code < 500, (route, params, r.text)


def test_the_openapi_schema_names_every_route(served):
    paths = served.get("/openapi.json").json()["paths"]
    for route in ("/api/simulations", "/api/simulations/{sim_id}/stream", "/api/simulations/{sim_id}/fork",
                  "/api/simulations/{sim_id}/intervene", "/api/simulations/{sim_id}/metrics", "/api/events"):
        assert route in paths
