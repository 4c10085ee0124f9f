"""cluster/grafana_dashboard.json queries only metrics that exist: mfray's own (the catalogue in
mfray.ray.metrics, under the Prometheus names Ray exports them as) or the external metrics of Ray
Serve and Ray Serve LLM (vLLM) listed in EXTERNAL below, each with the Ray 2.60 file that queries
it too; and every catalogue metric is plotted somewhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mfray.ray.metrics import CATALOGUE, MetricSpec, spec

DASHBOARD = Path(__file__).resolve().parents[2] / "cluster" / "grafana_dashboard.json"

# External Prometheus names the dashboard may query, and where each comes from: Ray's own Grafana
# dashboards, as installed with ray 2.60 under ray/dashboard/modules/metrics/dashboards/.
# ray_serve_*: Serve's proxy and router metrics. ray_vllm_*: vLLM's engine metrics (vllm:* with ':'
# made '_'), recorded through Ray by ray.serve.llm (log_engine_metrics, on by default since Ray
# 2.51; docs.ray.io serve/llm/user-guides/observability); Ray's file builds histogram names from
# the base name, hence the check on the name less its _bucket/_sum/_count.
SERVE = "serve_dashboard_panels.py"
SERVE_LLM = "serve_llm_dashboard_panels.py"
EXTERNAL = {
    "ray_serve_num_http_requests_total": SERVE,
    "ray_serve_num_http_error_requests_total": SERVE,
    "ray_serve_http_request_latency_ms_bucket": SERVE,
    "ray_serve_deployment_queued_queries": SERVE,
    "ray_vllm_num_requests_running": SERVE_LLM,
    "ray_vllm_num_requests_waiting": SERVE_LLM,
    "ray_vllm_generation_tokens_total": SERVE_LLM,
    "ray_vllm_prompt_tokens_total": SERVE_LLM,
    "ray_vllm_time_to_first_token_seconds_bucket": SERVE_LLM,
    "ray_vllm_request_time_per_output_token_seconds_bucket": SERVE_LLM,
    "ray_vllm_e2e_request_latency_seconds_bucket": SERVE_LLM,
    "ray_vllm_kv_cache_usage_perc": SERVE_LLM,
    "ray_vllm_prefix_cache_hits_total": SERVE_LLM,
    "ray_vllm_prefix_cache_queries_total": SERVE_LLM,
}

_FUNCTION_OR_KEYWORD = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                        "and", "or", "unless", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers left once string literals, label
    matchers {...}, ranges [...], grouping clauses `by (...)` etc., numbers, durations and
    function calls `f(` are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b\d+(\.\d+)?(ms|s|m|h|d|w|y)?\b", " ", text)  # numbers and durations (offset 5m)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        follows = text[m.end():].lstrip()[:1]
        if follows != "(" and m.group().lower() not in _FUNCTION_OR_KEYWORD:
            names.add(m.group())
    return names


def test_metric_names_of_hand_written_expressions():
    assert metric_names('histogram_quantile(0.95, sum by (le, backend) (rate(ray_x_bucket{a="b{c}"}[$__rate_interval])))') == {"ray_x_bucket"}
    assert metric_names("sum(rate(ray_a_total[1m])) / sum without (WorkerId) (ray_b) * 60") == {"ray_a_total", "ray_b"}
    assert metric_names('sum(ray_c{status=~"error|invalid"}) offset 5m') == {"ray_c"}


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expr) of every query in the dashboard, rows included."""
    board = json.loads(DASHBOARD.read_text())
    panels = list(board["panels"])
    for p in board["panels"]:
        panels += p.get("panels", [])
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def catalogue_names() -> dict[str, MetricSpec]:
    return {name: s for s in CATALOGUE for name in s.prometheus_names()}


def test_prometheus_names_follow_ray_conventions():
    # What Ray 2.60's agent exports (tests/integration/test_metrics_export.py reads it for real).
    assert spec("mfray_runs").prometheus_names() == ("ray_mfray_runs_total",)
    assert spec("mfray_llm_queue_depth").prometheus_names() == ("ray_mfray_llm_queue_depth",)
    assert spec("mfray_llm_request_seconds").prometheus_names() == (
        "ray_mfray_llm_request_seconds_bucket", "ray_mfray_llm_request_seconds_sum", "ray_mfray_llm_request_seconds_count")


def test_every_query_names_a_known_metric():
    known = catalogue_names()
    unknown = [(title, name) for title, expr in dashboard_targets() for name in metric_names(expr)
               if name not in known and name not in EXTERNAL]
    assert unknown == [], f"queries of metrics neither in mfray.ray.metrics.CATALOGUE nor in EXTERNAL: {unknown}"


def test_every_catalogue_metric_is_plotted():
    queried = {name for _, expr in dashboard_targets() for name in metric_names(expr)}
    missing = [s.name for s in CATALOGUE if not queried & set(s.prometheus_names())]
    assert missing == [], f"catalogue metrics no panel plots: {missing}"


def test_histograms_are_plotted_as_quantiles_of_their_buckets():
    exprs = [expr for _, expr in dashboard_targets()]
    for s in CATALOGUE:
        if s.kind == "histogram":
            assert any("histogram_quantile(0.95" in e and f"ray_{s.name}_bucket" in e and "le" in e for e in exprs), s.name


def test_external_names_appear_in_rays_own_dashboards():
    ray = pytest.importorskip("ray")
    folder = Path(ray.__file__).parent / "dashboard" / "modules" / "metrics" / "dashboards"
    for name, source in EXTERNAL.items():
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert re.search(rf"\b{base}(_bucket|_sum|_count)?\b", (folder / source).read_text()), f"{name} not in Ray's {source}"


def test_every_external_name_is_used():
    queried = {name for _, expr in dashboard_targets() for name in metric_names(expr)}
    assert set(EXTERNAL) - queried == set()


def test_datasource_is_a_variable():
    board = json.loads(DASHBOARD.read_text())
    assert [v["type"] for v in board["templating"]["list"]] == ["datasource"]
    for p in board["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
