"""Does f_psi use its inputs? Two readings of a trained f_psi (benchmarks/transition_study.py):

1. Its predictions inside a simulation: the m_t that the comparison's MF-MDP run recorded for each
   event (benchmarks/mdp_compare.py), step by step, warm-up (real m*_t) then f_psi's own.
2. A probe: the same text parts (seeded random E(r), E(profiles)) under three different histories
   m_{t-1} (mostly negative, mostly neutral, all positive), and under zero text parts: how far
   apart its predictions land (largest absolute difference of any share).

    .venv/bin/python benchmarks/fpsi_sensitivity.py
    .venv/bin/python benchmarks/fpsi_sensitivity.py --model benchmarks/results/mdp_models/fpsi_alpha0.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def recorded_macro_states(folder: Path) -> dict[str, dict[int, list[float]]]:
    """{event: {step: [positive, neutral, negative]}} of a run folder's published trajectories."""
    from mfray.mdp.macro import STATES
    from mfray.sim.store import published_runs, read_runs

    out: dict[str, dict[int, list[float]]] = {}
    for run, records in read_runs(published_runs(folder).values()):
        steps = out.setdefault(run.meta["event_id"], {})
        for r in records:
            if r.macro_state:
                m = json.loads(r.macro_state)
                steps[r.step] = [round(m[s], 3) for s in STATES]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "benchmarks/results/mdp_models/fpsi.pt")
    ap.add_argument("--run", type=Path, default=REPO / "benchmarks/results/mdp_compare/runs/mf_mdp__f_psi_v1",
                    help="a run folder of an mfmdp method made with this f_psi (reading 1)")
    args = ap.parse_args()

    import torch

    from mfray.mdp.transition_train import load_transition

    if args.run.is_dir():
        for event, steps in sorted(recorded_macro_states(args.run).items()):
            shown = {t: steps[t] for t in (0, 1, 2, 3, 4, 10, 30, max(steps)) if t in steps}
            print(f"[recorded] {event} m_t (positive, neutral, negative) by step: {shown}")
    model = load_transition(args.model).eval()
    d_text = model.cfg.d_in - 3
    text = torch.randn(1, 4, d_text, generator=torch.Generator().manual_seed(0)) * 0.1
    histories = {"mostly negative": [[0, .19, .81], [.06, .19, .75], [0, .88, .12], [0, .9, .1]],
                 "mostly neutral": [[0, .94, .06], [0, .88, .12], [0, 1, 0], [0, 1, 0]],
                 "all positive": [[1, 0, 0]] * 4}
    preds = {}
    with torch.no_grad():
        for name, ms in histories.items():
            preds[name] = model(torch.cat([torch.tensor(ms, dtype=torch.float32)[None], text], dim=-1))[0]
            print(f"[probe] history {name}: predictions {[[round(v, 3) for v in row] for row in preds[name].tolist()]}")
        zero = model(torch.cat([torch.tensor(histories["mostly negative"], dtype=torch.float32)[None],
                                torch.zeros_like(text)], dim=-1))[0]
    spread = max(float((a - b).abs().max()) for a in preds.values() for b in preds.values())
    print(f"[probe] largest difference between histories, any step and share: {spread:.4f}")
    print(f"[probe] largest difference, random vs zero text parts: {float((zero - preds['mostly negative']).abs().max()):.4f}")


if __name__ == "__main__":
    main()
