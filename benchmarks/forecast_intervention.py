"""Forecasting from several start points, and a debunking intervention at one step vs two steps
(SPEC section 3; the fidelity study's applications), with the default model.

    .venv/bin/python benchmarks/forecast_intervention.py                  # both parts
    .venv/bin/python benchmarks/forecast_intervention.py --part intervention

Forecast: on study events (jobs/configs/simulate_sweep_fidelity.yaml: nothing was tuned on them),
each method warms up with the real posts of agents 0..k-1 and simulates the next `--ahead` agents,
for k in `--starts`. Every post, real and simulated, is labelled by the hybrid annotator; the table
gives the attitude and belief KL over 16-agent windows of the forecast against the real posts of
those agents, per start point; the plot shows the real negative-attitude share and each forecast.

Intervention: the Weibo "forward to win an iPhone" event (jobs/configs/forecast_intervention.yaml's
debunk), one seed, per method (`--intervention-methods`: mf, whose agents learn of the debunk only
through the mean field, and recent, whose agents see it in their timeline) three runs that differ
only in the inserted official debunk: none, at step 4 (agents 64..), and at steps 4 and 6. The
same seed makes the steps before the first insertion identical; the plot shows the doubt share
(belief) and the counter share (rumor) of the generated posts over agents, one row per method.
Results: benchmarks/results/forecast_intervention/ (results.json is written after each part).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "benchmarks/results/forecast_intervention"
DEBUNK = "【官方辟谣】所谓“转发送iPhone”的活动与本账号无关，请勿轻信。"
LIU_XIANG = "../shared/data/weibo_rumdect/test/3476055656644087.json"


def rollout_config(method: str, horizon: int):
    from mfray.sim.config import RolloutConfig, SamplingConfig

    return RolloutConfig(method=method, horizon=horizon, agents_per_step=16, sim_start=48, prompt_style="timeline",
                         mean_field=SamplingConfig(temperature=0.1, max_new_tokens=100, first_line=False))


def labels(annotator, records, simulated: bool) -> list[dict]:
    """Every dimension's label of each record's real or simulated post (one annotator pass)."""
    from mfray.eval.annotate import AnnotationItem

    texts = [(r.simulated_text if simulated else r.real_text) or "" for r in records]
    return [a.labels for a in annotator.annotate_sync([AnnotationItem(t, r.topic, r.language) for t, r in zip(texts, records)])]


def shares(values: list[str | None], label: str, window: int = 16) -> list[float]:
    """Share of `label` among the labelled posts of each consecutive window."""
    out = []
    for i in range(0, len(values), window):
        part = [v for v in values[i: i + window] if v is not None]
        out.append(sum(v == label for v in part) / len(part) if part else float("nan"))
    return out


def forecast_part(engine, annotator, events: list[str], methods: list[str], starts: list[int], ahead: int) -> dict:
    from mfray.data.validate import load_file
    from mfray.eval.labels import DIMENSIONS
    from mfray.eval.metrics import nearest_windows, window_divergences
    from mfray.sim.driver import forecast

    table, curves = [], {}
    for path in events:
        event = load_file(REPO / path).events[0]
        for method in methods:
            for start in starts:
                cfg = rollout_config(method, start + ahead)
                records = [r for r in asyncio.run(forecast(event, engine, cfg, start, seed=0)) if not r.warmup]
                row = {"event_id": event.event_id, "method": method, "start": start, "agents": len(records)}
                real_labels, sim_labels = labels(annotator, records, False), labels(annotator, records, True)
                for dim in ("attitude", "belief"):
                    real = [a.get(dim) for a in real_labels]
                    sim = [a.get(dim) for a in sim_labels]
                    kl, _ = window_divergences(nearest_windows(real), nearest_windows(sim), DIMENSIONS[dim])
                    row[f"{dim}_kl"] = kl
                    if dim == "attitude":
                        curves.setdefault(event.event_id, {"real": {}, "sim": {}})
                        curves[event.event_id]["real"][start] = shares(real, "negative")
                        curves[event.event_id]["sim"][f"{method} from {start}"] = (start, shares(sim, "negative"))
                table.append(row)
                print(f"[forecast] {row}", flush=True)
    return {"table": table, "curves": curves}


def intervention_part(engine, annotator, methods: list[str], horizon: int) -> dict:
    """{method: {arm: doubt and counter shares of the generated posts per 16 agents}}."""
    from mfray.data.validate import load_file
    from mfray.sim.config import Intervention
    from mfray.sim.driver import run_event

    event = load_file(REPO / LIU_XIANG).events[0]
    arms = {"no debunk": [], "debunk at step 4": [Intervention(step=4, posts=[DEBUNK])],
            "debunk at steps 4 and 6": [Intervention(step=4, posts=[DEBUNK]), Intervention(step=6, posts=[DEBUNK])]}
    out = {}
    for method in methods:
        base = rollout_config(method, horizon)
        for name, interventions in arms.items():
            cfg = base.model_copy(update={"interventions": interventions})
            records = [r for r in asyncio.run(run_event(event, engine, cfg, seed=0)) if not r.warmup]
            generated = [r for r in records if not r.intervention]
            index = [r.agent_index for r in generated]
            made = labels(annotator, generated, simulated=True)
            doubt = shares([a.get("belief") for a in made], "doubt")
            counter = shares([a.get("rumor") for a in made], "counter")
            out.setdefault(method, {})[name] = {"first_agent": index[0] if index else None, "doubt": doubt,
                                                "counter": counter, "inserted": sum(r.intervention for r in records)}
            print(f"[intervention] {method}, {name}: doubt {['%.2f' % v for v in doubt]} "
                  f"counter {['%.2f' % v for v in counter]}", flush=True)
    return out


def plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "forecast" in result:
        curves = result["forecast"]["curves"]
        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.4), squeeze=False)
        for ax, (event, c) in zip(axes[0], curves.items()):
            for start, real in c["real"].items():
                ax.plot([start + 16 * i for i in range(len(real))], real, "k-", lw=2, label="real" if start == min(c["real"]) else None)
            for name, (start, sim) in c["sim"].items():
                ax.plot([start + 16 * i for i in range(len(sim))], sim, "--", lw=1.3, label=name)
            ax.set(title=f"{event}: negative attitude share per 16 agents", xlabel="agent index", ylim=(0, 1))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(OUT / "forecast.png", dpi=100)
    if "intervention" in result:
        methods = result["intervention"]
        fig, axes = plt.subplots(len(methods), 2, figsize=(10, 3.4 * len(methods)), squeeze=False)
        for row, (method, arms) in zip(axes, methods.items()):
            for ax, key in zip(row, ("doubt", "counter")):
                for name, arm in arms.items():
                    ax.plot([48 + 16 * i for i in range(len(arm[key]))], arm[key], marker=".", label=name)
                for step in (4, 6):
                    ax.axvline(16 * step, color="grey", ls=":", lw=1)
                ax.set(title=f"{method}: {key} share of generated posts", xlabel="agent index", ylim=(0, 1))
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7)
        fig.suptitle("Weibo 'forward to win an iPhone' rumour: an official debunk inserted (dotted: steps 4 and 6)")
        fig.tight_layout()
        fig.savefig(OUT / "intervention.png", dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["both", "forecast", "intervention"], default="both")
    ap.add_argument("--events", nargs="+", default=["../shared/data/twitter_rumdect/E132.json",
                                                    "../shared/data/twitter_rumdect/E405.json",
                                                    "../shared/data/twitter_rumdect/E539.json"])
    ap.add_argument("--methods", nargs="+", default=["state", "mf"])
    ap.add_argument("--starts", nargs="+", type=int, default=[48, 112, 176])
    ap.add_argument("--ahead", type=int, default=64, help="agents simulated after each start")
    ap.add_argument("--intervention-methods", nargs="+", default=["mf", "recent"])
    ap.add_argument("--intervention-horizon", type=int, default=160)
    args = ap.parse_args()

    import torch

    from mfray.eval.annotators import build_local_annotator
    from mfray.llm.local import LocalEngine

    torch.set_num_threads(2)
    engine, annotator = LocalEngine.load("default"), build_local_annotator("hybrid")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "results.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    result["command"] = "benchmarks/forecast_intervention.py " + " ".join(sys.argv[1:])
    if args.part in ("both", "forecast"):
        result["forecast"] = forecast_part(engine, annotator, args.events, args.methods, args.starts, args.ahead)
        path.write_text(json.dumps(result, indent=1))  # a part's hour is not lost when the next one fails
    if args.part in ("both", "intervention"):
        result["intervention"] = intervention_part(engine, annotator, args.intervention_methods, args.intervention_horizon)
        path.write_text(json.dumps(result, indent=1))
    plot(result)
    print(f"wrote {path} and the plots beside it")


if __name__ == "__main__":
    main()
