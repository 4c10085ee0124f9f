"""MF-MDP against MF-LLM and the state baseline over long Twitter events, with the paper's ablations
(SPEC section 6, paper Table 2): the attitude distribution's KL, Wasserstein and DTW against the
real posts over the whole simulated horizon, and trajectory plots of the attitude shares.

Variants (each simulated into its own folder under --out, so that runs of one method made
differently never mix):
  state, mf                  the baselines, base model
  mfmdp (w/o LCT-Policy)     f_psi (alpha 1) carries m_t; the base policy
  MF-MDP                     method mfmdp_lct: f_psi (alpha 1) and the LCT-Policy adapter (J 4)
  w/o LCT-State              mfmdp_lct with f_psi trained with alpha 0 (no rollout loss)
  w/o sampling               mfmdp_lct with the LCT-Policy adapter trained with J 1
  MF-MDP (f_psi v1)          MF-MDP as first run, with the plain-head f_psi of 8 events, which
                             turned out to ignore its inputs (BENCHMARKS.md); kept for the record
f_psi (v2: the residual output, TransitionConfig.residual, trained on the 43 events of
jobs/configs/mdp_transition_data.yaml's two data folders) and the adapter are trained on other
events (benchmarks/transition_study.py, jobs/configs/train_lct.yaml): every event here is unseen
by both. Resumable: each variant is a `mfray
simulate` run that skips what is finished and resumes what was killed; a rerun only evaluates.
The run folders are tracked by git (benchmarks/results/mdp_compare/runs): commit them as the
study goes, since a new machine starts without runs/.

    .venv/bin/python benchmarks/transition_study.py --residual --data benchmarks/results/mdp_transition_data \
        benchmarks/results/mdp_transition_data_2 --model-out benchmarks/results/mdp_models/fpsi_residual.pt \
        --out benchmarks/results/transition_study_residual.json
    .venv/bin/mfray train lct --config jobs/configs/train_lct.yaml
    .venv/bin/mfray train lct --config jobs/configs/train_lct.yaml --set lct.instances=1 --set out=runs/train_lct_j1
    .venv/bin/python benchmarks/mdp_compare.py            # simulate (hours on this CPU), evaluate, plot
    .venv/bin/python benchmarks/mdp_compare.py --only-evaluate   # tables and plots of the finished variants
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = "jobs/configs/mdp_compare.yaml"
FPSI = "benchmarks/results/mdp_models/fpsi_residual.pt"
FPSI_ALPHA0 = "benchmarks/results/mdp_models/fpsi_residual_alpha0.pt"
FPSI_V1 = "benchmarks/results/mdp_models/fpsi.pt"
LCT = "runs/train_lct/adapters/lct_policy"
LCT_J1 = "runs/train_lct_j1/adapters/lct_policy"

# name -> (method, --set overrides)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "state": ("state", []),
    "mf": ("mf", []),
    "mfmdp (w/o LCT-Policy)": ("mfmdp", [f"rollout.mdp.transition={FPSI}"]),
    "MF-MDP": ("mfmdp_lct", [f"rollout.mdp.transition={FPSI}", f"model.adapters.lct_policy={LCT}"]),
    "w/o LCT-State": ("mfmdp_lct", [f"rollout.mdp.transition={FPSI_ALPHA0}", f"model.adapters.lct_policy={LCT}"]),
    "w/o sampling": ("mfmdp_lct", [f"rollout.mdp.transition={FPSI}", f"model.adapters.lct_policy={LCT_J1}"]),
    "MF-MDP (f_psi v1)": ("mfmdp_lct", [f"rollout.mdp.transition={FPSI_V1}", f"model.adapters.lct_policy={LCT}"]),
}
METRICS = ("kl", "wasserstein", "dtw")


def folder_of(out: Path, variant: str) -> Path:
    return out / "".join(c if c.isalnum() else "_" for c in variant).strip("_").lower()


def simulate(variant: str, out: Path) -> int:
    method, sets = VARIANTS[variant]
    cmd = [str(REPO / ".venv/bin/mfray"), "simulate", "--config", CONFIG, "--method", method,
           "--out", str(folder_of(out, variant))] + [a for s in sets for a in ("--set", s)]
    print(f"[compare] {variant}: {' '.join(cmd[1:])}", flush=True)
    return subprocess.call(cmd, cwd=REPO)


def evaluate(variant: str, out: Path, start: int, end: int) -> list[dict]:
    """Attitude rows of metrics_raw.csv (one per event) of `mfray evaluate` over the variant's folder,
    under the offline annotator: MF-MDP's attitude states (m*_t that f_psi learned from, the
    curves below) are its labels, so the comparison reads every variant with the same ruler."""
    import csv

    folder = folder_of(out, variant)
    ev = folder.with_name(folder.name + "_eval")
    subprocess.run([str(REPO / ".venv/bin/mfray"), "evaluate", "--trajectories", str(folder), "--out", str(ev),
                    "--eval-start", str(start), "--eval-end", str(end), "--no-nll", "--annotator", "offline"],
                   cwd=REPO, check=True)
    with (ev / "metrics_raw.csv").open(encoding="utf-8") as fh:
        return [row for row in csv.DictReader(fh) if row["dimension"] == "attitude"]


def attitude_curves(folder: Path, window: int) -> dict[str, dict[str, list[float]]]:
    """{event: {"real" | "sim": [positive share, ...], "real_neg" | "sim_neg": [...]}} per `window`
    agents of the generated part, labelled by the offline annotator."""
    from mfray.mdp.macro import histogram
    from mfray.mdp.tracker import attitude_labels
    from mfray.sim.store import published_runs, read_runs

    curves = {}
    for run, records in read_runs(published_runs(folder).values()):
        sim = [r for r in records if not r.warmup]
        topic, language = sim[0].topic, sim[0].language
        real = attitude_labels([r.real_text or "" for r in sim], topic, language, "offline")
        made = attitude_labels([r.simulated_text or "" for r in sim], topic, language, "offline")
        out: dict[str, list[float]] = {"real": [], "sim": [], "real_neg": [], "sim_neg": []}
        for i in range(0, len(sim), window):
            for key, labels in (("real", real), ("sim", made)):
                h = histogram(labels[i: i + window])
                out[key].append(float("nan") if h is None else float(h[0]))
                out[f"{key}_neg"].append(float("nan") if h is None else float(h[2]))
        curves[run.meta["event_id"]] = out
    return curves


def plot(curves: dict[str, dict], window: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = sorted({e for per in curves.values() for e in per})
    fig, axes = plt.subplots(2, len(events), figsize=(5 * len(events), 6), squeeze=False, sharex="col")
    for col, event in enumerate(events):
        for row, (suffix, name) in enumerate((("", "positive"), ("_neg", "negative"))):
            ax = axes[row][col]
            real = next(per[event][f"real{suffix}"] for per in curves.values() if event in per)
            ax.plot([i * window for i in range(len(real))], real, "k--", lw=2, label="real")
            for variant, per in curves.items():
                if event in per:
                    ax.plot([i * window for i in range(len(per[event][f"sim{suffix}"]))], per[event][f"sim{suffix}"], lw=1, label=variant)
            ax.set(title=f"{event}: {name} share per {window} agents", xlabel="generated agents", ylim=(0, 1))
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    import yaml

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/mdp_compare/runs",
                    help="the variants' run folders (tracked by git, so that the study resumes on another machine)")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="which variants (default all)")
    ap.add_argument("--only-evaluate", action="store_true", help="simulate nothing: evaluate the finished variants")
    ap.add_argument("--window", type=int, default=64, help="agents per point of the trajectory plot")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks/results/mdp_compare")
    args = ap.parse_args()
    rollout = yaml.safe_load((REPO / CONFIG).read_text())["rollout"]
    start, end = rollout["sim_start"], rollout["horizon"]
    if not args.only_evaluate:
        for variant in args.variants:
            if simulate(variant, args.out) != 0:
                print(f"[compare] {variant}: simulate failed; its finished runs are kept, rerun to resume", flush=True)
    table, curves, missing = {}, {}, []
    for variant in args.variants:
        try:
            rows = evaluate(variant, args.out, start, end)
        except (subprocess.CalledProcessError, FileNotFoundError):
            missing.append(variant)
            continue
        table[variant] = {row["event_id"]: {m: float(row[m]) for m in METRICS} for row in rows}
        curves[variant] = attitude_curves(folder_of(args.out, variant), args.window)
    args.results.mkdir(parents=True, exist_ok=True)
    result = {"command": "benchmarks/mdp_compare.py " + " ".join(sys.argv[1:]), "config": CONFIG,
              "eval_agents": [start, end], "annotator": "offline", "variants": table, "not_finished": missing}
    (args.results / "results.json").write_text(json.dumps(result, indent=2))
    if curves:
        plot(curves, args.window, args.results / "attitude_trajectories.png")
    events = sorted({e for per in table.values() for e in per})
    print("| variant | " + " | ".join(f"{e} {m}" for e in events for m in METRICS) + " |")
    for variant, per in table.items():
        print(f"| {variant} | " + " | ".join(f"{per[e][m]:.4f}" if e in per else "-" for e in events for m in METRICS) + " |")
    if missing:
        print(f"not finished yet: {', '.join(missing)}")


if __name__ == "__main__":
    main()
