"""f_psi on real events (SPEC section 6): trained on the all-real mfmdp runs of
jobs/configs/mdp_transition_data.yaml, with L_seq + alpha * L_roll (alpha 1) and without the
rollout term (alpha 0, the "w/o LCT-State" ablation), scored on held-out events (never fitted):
L_seq and L_roll per epoch, and the K-step rollout KL against the persistence baseline
(m_{t+k} = m_t), plain and smoothed (its floor fit on the training events). Writes benchmarks/results/transition_study.json, a plot, the alpha-1 model to
runs/mdp_transition/fpsi.pt (what `--set rollout.mdp.transition=...` of an mfmdp simulation takes)
and the alpha-0 one beside it (fpsi_alpha0.pt: the "w/o LCT-State" ablation's f_psi).

    nice -n 19 .venv/bin/mfray simulate --config jobs/configs/mdp_transition_data.yaml   # the data, first
    .venv/bin/python benchmarks/transition_study.py [--epochs 20] [--lr 2e-5]
    .venv/bin/python benchmarks/transition_study.py --residual --data FOLDER [FOLDER ...]   # f_psi v2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The held-out events: every fifth of jobs/configs/mdp_transition_data.yaml's list (marked there).
HELDOUT = ("E229", "E248", "E278", "E291", "E318", "E349", "E373", "E39")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=["runs/mdp_transition_data"],
                    help="dataset folders of all-real mfmdp runs; an event may be in only one")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=2e-5, help="SPEC: 2e-5")
    ap.add_argument("--encoder-dim", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/transition_study.json")
    ap.add_argument("--model-out", default="runs/mdp_transition/fpsi.pt")
    ap.add_argument("--expect-events", type=int, metavar="N",
                    help="refuse to train unless the folders hold exactly N finished events (a data run still going)")
    ap.add_argument("--residual", action="store_true",
                    help="f_psi's output moves m_{t-1}: softmax(head + log(m_{t-1} + floor)) (TransitionConfig.residual), "
                         "the floor that of smoothed persistence fit on the training events")
    args = ap.parse_args()

    import torch

    from mfray.mdp.data import load_sequences
    from mfray.mdp.transition import TransitionConfig
    from mfray.mdp.transition_train import best_persistence_floor, rollout_kl, save_checkpoint, train_transition

    torch.set_num_threads(2)
    sequences = {}
    for folder in args.data:
        more = load_sequences(folder, args.encoder_dim)
        if twice := sorted(set(sequences) & set(more)):
            sys.exit(f"transition_study: events {twice} are in more than one of {args.data}: pass each event once")
        sequences.update(more)
    if args.expect_events is not None and len(sequences) != args.expect_events:
        sys.exit(f"transition_study: {len(sequences)} finished events in {args.data}, expected {args.expect_events}: "
                 "let the data run finish (benchmarks/resume_transition_data.sh)")
    heldout = {e: s for e, s in sequences.items() if e in HELDOUT}
    train = {e: s for e, s in sequences.items() if e not in HELDOUT}
    print(f"{len(train)} training events, {len(heldout)} held out ({sorted(heldout)}); "
          f"steps per event {sorted({s.x.shape[0] for s in sequences.values()})}")
    results = {"command": " ".join(["benchmarks/transition_study.py", *sys.argv[1:]]), "data": args.data,
               "encoder": f"hashing, {args.encoder_dim} dims", "train_events": sorted(train), "heldout_events": sorted(heldout),
               "baselines": baselines(list(train.values()), list(heldout.values())), "runs": {}}
    floor = best_persistence_floor(list(train.values()))
    results["persistence_floor"] = floor
    print(f"held-out baselines (mean KL(m*_t || prediction) per step): {results['baselines']}; "
          f"smoothed persistence's floor, fit on the training events: {floor:g}")
    for alpha in (1.0, 0.0):
        # The residual f_psi starts from smoothed persistence: its floor is the one fit above.
        extra = {"residual": True, "residual_floor": floor} if args.residual else {}
        cfg = TransitionConfig(encoder_dim=args.encoder_dim, lr=args.lr, epochs=args.epochs, alpha=alpha, **extra)
        began = time.time()
        model, history = train_transition(list(train.values()), list(heldout.values()), cfg, seed=args.seed)
        seconds = time.time() - began
        k_kl = {k: [rollout_kl(model, s.x, s.m, k, floor=floor) for s in heldout.values()] for k in (1, 4, 8)}
        results["runs"][f"alpha={alpha:g}"] = {
            "config": cfg.model_dump(), "train_seconds": round(seconds, 1),
            "epochs": [vars(h) for h in history],
            "heldout_rollout_kl": {str(k): {name: sum(v[name] for v in rows) / len(rows) for name in rows[0]}
                                   for k, rows in k_kl.items()},
        }
        last = history[-1]
        print(f"alpha {alpha:g}: {seconds:.0f} s; held-out L_seq {history[0].heldout_seq:.4f} -> {last.heldout_seq:.4f}, "
              f"L_roll {history[0].heldout_roll} -> {last.heldout_roll}; K-step KL "
              + ", ".join(f"K={k} {v['model']:.4f} vs persistence {v['persistence']:.4f} "
                          f"(smoothed {v['persistence_smoothed']:.4f})"
                          for k, v in results["runs"][f"alpha={alpha:g}"]["heldout_rollout_kl"].items()))
        out = Path(args.model_out)
        out = out if alpha == 1.0 else out.with_name(f"{out.stem}_alpha0{out.suffix}")
        out.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, out)
    Path(args.out).write_text(json.dumps(results, indent=2))
    plot(results, Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.png')}; model {args.model_out}")


def baselines(train: list, heldout: list) -> dict[str, float]:
    """Held-out KL of two predictors that need no model: persistence (m_t = m_{t-1}, m_0 first)
    and the training events' mean histogram (one constant for every step: what a model that
    learned only the marginal would score)."""
    import torch

    from mfray.mdp.transition import kl_rows

    marginal = torch.cat([s.m for s in train]).mean(dim=0)
    m = torch.cat([s.m for s in heldout])
    previous = torch.cat([s.x[:, :3] for s in heldout])  # each token's m-slot: m*_{t-1} (m_0 first)
    return {"persistence_1_step": kl_rows(m, previous).mean().item(),
            "training_marginal": kl_rows(m, marginal.expand_as(m)).mean().item()}


def plot(results: dict, path: Path) -> None:
    """Held-out L_seq and L_roll per epoch, with and without the rollout term."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for name, run in results["runs"].items():
        epochs = [e["epoch"] for e in run["epochs"]]
        for ax, key in zip(axes, ("heldout_seq", "heldout_roll")):
            values = [e[key] for e in run["epochs"]]
            if all(v is not None and v == v for v in values):
                ax.plot(epochs, values, marker=".", label=name)
    for ax, title in zip(axes, ("held-out L_seq", "held-out L_roll (K = 8)")):
        ax.set(xlabel="epoch", title=title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
